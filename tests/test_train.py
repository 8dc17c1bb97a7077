"""A short training run on generated pairs: exports weights that load, and resumes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file
from typer.testing import CliRunner

from bgcut.cli import app
from bgcut.models import create_model
from bgcut.models._weights import sha256_file
from bgcut.train.ema import Ema
from bgcut.train.losses import bce_iou_loss, boundary_weights

from .conftest import save, square_image


def make_pairs(root: Path, n: int = 12) -> None:
    rng = np.random.default_rng(1)
    for i in range(n):
        x0, y0 = (int(v) for v in rng.integers(2, 30, 2))
        arr = square_image((64, 64), (x0, y0, x0 + 30, y0 + 30))
        save(arr, root / "images" / f"p{i}.jpg")
        save(arr[..., 0], root / "masks" / f"p{i}.png")


def test_train_export_and_resume(tmp_path: Path) -> None:
    make_pairs(tmp_path)

    def args(epochs: int, *extra: str) -> list[str]:
        return [
            "train",
            "--images",
            str(tmp_path / "images"),
            "--masks",
            str(tmp_path / "masks"),
            "-o",
            str(tmp_path / "run"),
            "--epochs",
            str(epochs),
            "--size",
            "64",
            "-b",
            "4",
            "-j",
            "0",
            "--device",
            "cpu",
            "--val-fraction",
            "0.25",
            *extra,
        ]

    result = CliRunner().invoke(app, args(1), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    run = tmp_path / "run"
    config = json.loads((run / "config.json").read_text())
    assert config["arch"] == "unet_lite" and config["sha256"] == sha256_file(run / "model.safetensors")
    assert len(json.loads((run / "history.json").read_text())) == 1
    loaded = create_model(weights=run)
    assert loaded.cfg.arch == "unet_lite"
    # Resume: a second invocation with more epochs continues from last.pt instead of starting over.
    result = CliRunner().invoke(app, args(2, "--resume"), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "resumed from" in result.output
    history = json.loads((run / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]


def test_init_from_weights(tmp_path: Path, luma_weights: Path) -> None:
    make_pairs(tmp_path, n=6)
    base = ["train", "--images", str(tmp_path / "images"), "--masks", str(tmp_path / "masks"), "--epochs", "1",
            "--size", "64", "-b", "4", "-j", "0", "--device", "cpu"]  # fmt: skip
    first = CliRunner().invoke(app, [*base, "-o", str(tmp_path / "a")], catch_exceptions=False)
    assert first.exit_code == 0, first.output
    second = CliRunner().invoke(
        app, [*base, "-o", str(tmp_path / "b"), "--init", str(tmp_path / "a" / "model.safetensors")]
    )
    assert second.exit_code == 0 and "initialised from" in second.output
    wrong = CliRunner().invoke(
        app, [*base, "-o", str(tmp_path / "c"), "--init", str(luma_weights / "model.safetensors")]
    )
    assert wrong.exit_code == 1 and "do not fit architecture LiteUNet" in wrong.output


def test_ema_ramps_up_and_copies_counters() -> None:
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 1, 1), torch.nn.BatchNorm2d(1))
    ema = Ema(model, decay=0.99)
    with torch.no_grad():
        model[0].weight.fill_(1.0)
        model[1].num_batches_tracked.fill_(7)
    start = ema.module[0].weight.clone()
    ema.update(model)  # first update: decay (1 + 1) / (10 + 1) = 2/11, far from 0.99
    expected = start * (2 / 11) + 1.0 * (9 / 11)
    assert torch.allclose(ema.module[0].weight, expected)
    assert int(ema.module[1].num_batches_tracked) == 7  # integer buffers are copied
    for _ in range(2000):
        ema.update(model)
    assert ema.current_decay() == 0.99
    assert not any(p.requires_grad for p in ema.module.parameters())


def test_boundary_weights_mark_only_the_edge() -> None:
    target = torch.zeros(1, 1, 20, 20)
    target[..., 5:15, 5:15] = 1
    w = boundary_weights(target, width=2, gain=4.0)
    assert w[0, 0, 0, 0] == 1 and w[0, 0, 10, 10] == 1  # far background, deep inside
    # the edge lies between rows 4 and 5: rows 3-6 are within 2 px of it
    assert [float(w[0, 0, r, 10]) for r in range(1, 9)] == [1, 1, 5, 5, 5, 5, 1, 1]
    logits = torch.zeros_like(target)
    assert torch.isclose(
        bce_iou_loss(logits, torch.ones_like(target), 4.0), bce_iou_loss(logits, torch.ones_like(target))
    )


def test_train_with_ema_and_boundary_loss_resumes(tmp_path: Path) -> None:
    make_pairs(tmp_path, n=8)
    base = ["train", "--images", str(tmp_path / "images"), "--masks", str(tmp_path / "masks"), "--size", "64",
            "-b", "4", "-j", "0", "--device", "cpu", "-o", str(tmp_path / "run"), "--ema", "0.9",
            "--boundary-gain", "4"]  # fmt: skip
    first = CliRunner().invoke(app, [*base, "--epochs", "1"], catch_exceptions=False)
    assert first.exit_code == 0, first.output
    ckpt = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert ckpt["ema"]["updates"] == 1  # 7 training pairs at batch 4: one step
    exported = load_file(str(tmp_path / "run" / "model.safetensors"))
    ema_state = ckpt["ema"]["module"]
    assert all(torch.equal(exported[k], ema_state[k].contiguous()) for k in exported)  # the average is exported
    assert any(not torch.equal(ckpt["model"][k], ema_state[k]) for k in ema_state if ema_state[k].is_floating_point())
    again = CliRunner().invoke(app, [*base, "--epochs", "2", "--resume"], catch_exceptions=False)
    assert again.exit_code == 0 and "resumed from" in again.output
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=True)["ema"]["updates"] == 2


def test_distillation_caches_teacher_masks_once(tmp_path: Path, luma_weights: Path) -> None:
    make_pairs(tmp_path, n=8)
    base = ["train", "--images", str(tmp_path / "images"), "--masks", str(tmp_path / "masks"), "--size", "64",
            "-b", "4", "-j", "0", "--device", "cpu", "-o", str(tmp_path / "run"),
            "--teacher", str(luma_weights)]  # fmt: skip
    first = CliRunner().invoke(app, [*base, "--epochs", "1"], catch_exceptions=False)
    assert first.exit_code == 0, first.output
    folders = list((tmp_path / "run" / "teacher").iterdir())
    assert len(folders) == 1 and folders[0].name.startswith("luma-test-")
    cached = sorted(folders[0].glob("*.png"))
    split = json.loads((tmp_path / "run" / "split.json").read_text())["val"]
    assert len(cached) == 8 - len(split)  # training images only: validation stays unseen
    soft = np.asarray(Image.open(cached[0]))
    image = np.asarray(Image.open(tmp_path / "images" / f"{cached[0].stem}.jpg").convert("L"))
    assert soft[image > 200].min() > 200 and soft[image < 50].max() < 50  # the luma teacher: bright = foreground
    assert f"teacher luma-test: {len(cached)} masks computed, 0 cached" in first.output
    stamps = {p: p.stat().st_mtime_ns for p in cached}
    again = CliRunner().invoke(app, [*base, "--epochs", "2", "--resume"], catch_exceptions=False)
    assert again.exit_code == 0 and f"0 masks computed, {len(cached)} cached" in again.output
    assert {p: p.stat().st_mtime_ns for p in cached} == stamps


def test_train_options_are_checked_once_before_any_work(tmp_path: Path) -> None:
    """TrainConfig, as the library builds it, refuses what the command line refuses, in one line,
    and cannot be changed after its checks."""
    import dataclasses

    import pytest

    from bgcut.errors import UsageError
    from bgcut.train.options import TrainConfig

    ok = TrainConfig(tmp_path / "images", tmp_path / "masks", tmp_path / "out")
    with pytest.raises(dataclasses.FrozenInstanceError):
        ok.epochs = 3  # type: ignore[misc]
    for kwargs, message in (
        ({"masks": None}, "give either --masks (image/mask pairs) or --coco"),
        ({"coco": tmp_path / "c.json"}, "give either --masks (image/mask pairs) or --coco"),
        ({"teacher": "isnet-general", "masks": None, "coco": tmp_path / "c.json"}, "--teacher works with --masks"),
        ({"resume_from": tmp_path / "s", "init": tmp_path / "w"}, "--resume-from goes on from a state file's weights"),
        ({"coco_mode": "boxes"}, "--coco-mode 'boxes': expected one of instances, classes"),
        ({"size": 16}, "--size 16: must be at least 32 pixels"),
        ({"epochs": 0}, "--epochs 0: must be at least 1"),
        ({"lr": float("nan")}, "--lr nan: must be above 0"),
        ({"ema": 1.0}, "--ema 1.0: must be from 0 up to, not including, 1 (0 is off)"),
        ({"paste": 1.5}, "--paste 1.5: must be from 0 to 1"),
        ({"boundary_gain": -1.0}, "--boundary-gain -1.0: must be at least 0"),
    ):
        args = {"images": tmp_path / "images", "masks": tmp_path / "masks", "output": tmp_path / "out", **kwargs}
        with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
            TrainConfig(**args)  # type: ignore[arg-type]
    assert not (tmp_path / "out").exists()
