"""A short training run on generated pairs: exports weights that load, and resumes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from bgcut.cli import app
from bgcut.models import create_model
from bgcut.models._weights import sha256_file

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
