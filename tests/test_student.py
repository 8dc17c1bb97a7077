"""The relay's students: EfficientNet-Lite0 + UNet (``bgcut-s``) and the narrow IS-Net, and the
training options they need (an ImageNet encoder, a CPU-time budget, architecture arguments)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from bgcut.cli import app
from bgcut.models import build_arch, create_model, get_pretrained_cfg
from bgcut.models.effnet_unet import EffUNet, SamePad
from bgcut.models.u2net import ISNet

from .test_train import make_pairs


def _foreign_encoder_state(model: EffUNet) -> dict[str, torch.Tensor]:
    """The encoder's tensors under efficientnet_pytorch's names, plus the head it drops."""
    names = {
        "stem.conv.": "_conv_stem.",
        "stem.bn.": "_bn0.",
    }
    out = {}
    for key, value in model.encoder.state_dict().items():
        new = key
        for ours, theirs in names.items():
            if key.startswith(ours):
                new = theirs + key.removeprefix(ours)
        if key.startswith("blocks."):
            _, i, part, kind, rest = key.split(".", 4)
            bn = {"expand": "_bn0", "dw": "_bn1", "project": "_bn2"}[part]
            conv = {"expand": "_expand_conv", "dw": "_depthwise_conv", "project": "_project_conv"}[part]
            new = f"_blocks.{i}.{conv if kind == 'conv' else bn}.{rest}"
        out[new] = torch.full_like(value, 0.5) if value.is_floating_point() else value
    out["_conv_head.weight"] = torch.zeros(1280, 320, 1, 1)
    out["_fc.weight"] = torch.zeros(1000, 1280)
    return out


def test_effnet_encoder_taps_and_renames() -> None:
    model = build_arch(get_pretrained_cfg("bgcut-s"))
    assert model.encoder.channels == [16, 24, 40, 112, 320]
    feats = model.encoder(torch.zeros(1, 3, 96, 128))
    assert [tuple(f.shape[-2:]) for f in feats] == [(48, 64), (24, 32), (12, 16), (6, 8), (3, 4)]
    renamed = EffUNet.encoder_state_from(_foreign_encoder_state(model))
    assert set(renamed) == set(model.encoder.state_dict())  # the head and classifier are dropped
    model.encoder.load_state_dict(renamed)
    assert float(model.encoder.blocks[3].dw.conv.weight.detach().mean()) == 0.5


def test_same_padding_puts_the_extra_pixel_right_and_bottom() -> None:
    x = torch.ones(1, 1, 4, 4)
    padded = SamePad(3, 2)(x)  # TensorFlow pads 0 before, 1 after for k=3, s=2 on an even size
    assert padded.shape[-2:] == (5, 5) and padded[0, 0, :4, :4].eq(1).all() and padded[0, 0, 4].eq(0).all()
    assert SamePad(5, 2)(x).shape[-2:] == (7, 7)  # 1 before, 2 after


@pytest.mark.parametrize(("width", "params"), [(1.0, 44_046_790), (0.5, 11_026_406), (0.25, 2_763_958)])
def test_narrow_isnet(width: float, params: int) -> None:
    model = ISNet(width).eval()
    assert sum(p.numel() for p in model.parameters()) == params
    with torch.inference_mode():
        assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 1, 64, 64)


def test_narrow_isnet_refuses_widths_that_split_channels() -> None:
    with pytest.raises(ValueError, match="whole"):
        ISNet(0.3)


def _train(tmp_path: Path, out: str, *extra: str) -> tuple[int, str]:
    args = ["train", "--images", str(tmp_path / "images"), "--masks", str(tmp_path / "masks"), "-o",
            str(tmp_path / out), "--size", "64", "-b", "4", "-j", "0", "--device", "cpu", *extra]  # fmt: skip
    result = CliRunner().invoke(app, args)
    return result.exit_code, result.output


def test_student_from_imagenet_encoder(tmp_path: Path) -> None:
    make_pairs(tmp_path, n=8)
    foreign = _foreign_encoder_state(build_arch(get_pretrained_cfg("bgcut-s")))
    pth = tmp_path / "imagenet.pth"
    torch.save(foreign, pth)
    code, output = _train(tmp_path, "s", "-m", "bgcut-s", "--init-encoder", str(pth), "--epochs", "1")
    assert code == 0, output
    assert "encoder initialised from" in output
    config = json.loads((tmp_path / "s" / "config.json").read_text())
    # Exported for the size it was trained at, with the ImageNet normalisation of its registry entry.
    assert config["arch"] == "effnet_unet" and config["input_size"] == 64 and config["mean"][0] == 127 / 255
    assert create_model(weights=tmp_path / "s").cfg.input_size == 64
    # An architecture without a pretrained encoder says so.
    code, output = _train(tmp_path, "l", "--init-encoder", str(pth), "--epochs", "1")
    assert code == 2 and "has no pretrained encoder" in output


def test_narrow_isnet_trains_with_arch_args(tmp_path: Path) -> None:
    make_pairs(tmp_path, n=6)
    code, output = _train(tmp_path, "q", "-m", "isnet-general", "--arch-args", '{"width": 0.25}', "--name",
                          "isnet-q", "--epochs", "1")  # fmt: skip
    assert code == 0, output
    config = json.loads((tmp_path / "q" / "config.json").read_text())
    assert config["arch_args"] == {"width": 0.25} and config["name"] == "isnet-q"
    loaded = create_model(weights=tmp_path / "q")
    assert sum(p.numel() for p in loaded.module.parameters()) == 2_763_958
    code, output = _train(tmp_path, "bad", "--arch-args", "[1]", "--epochs", "1")
    assert code == 2 and "--arch-args: expected a JSON object" in output


def test_cpu_budget_stops_and_carries_over_a_resume(tmp_path: Path) -> None:
    make_pairs(tmp_path, n=12)
    code, output = _train(tmp_path, "b", "--epochs", "50", "--max-cpu-minutes", "0.0001")
    assert code == 0, output
    assert "the time limit was reached in epoch 1" in output
    history = json.loads((tmp_path / "b" / "history.json").read_text())
    assert len(history) == 1 and history[0]["step"] == 1 and history[0]["cpu_seconds"] > 0
    # A resumed run counts the CPU time already spent: the budget is spent, so it stops at once.
    code, output = _train(tmp_path, "b", "--epochs", "50", "--max-cpu-minutes", "0.0001", "--resume")
    assert code == 0 and "resumed from" in output
    history = json.loads((tmp_path / "b" / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2] and history[1]["step"] == 2
    assert history[1]["cpu_seconds"] > history[0]["cpu_seconds"]



def test_disk_cache_is_built_once_and_shared(tmp_path: Path) -> None:
    make_pairs(tmp_path, n=8)
    cache = tmp_path / "cache"
    code, first = _train(tmp_path, "a", "--epochs", "1", "--cache-dir", str(cache), "--seed", "3")
    assert code == 0, first
    assert first.count("cache written to") == 2  # the training split and the validation split
    files = sorted(p.name for p in cache.iterdir())
    assert len([f for f in files if f.endswith(".images.npy")]) == 2 and not any(f.endswith(".part") for f in files)
    code, second = _train(tmp_path, "b", "--epochs", "1", "--cache-dir", str(cache), "--seed", "3")
    assert code == 0 and "cache written to" not in second
    # The same pairs from the files as from memory: the same first epoch, to the last digit.
    code, _ = _train(tmp_path, "c", "--epochs", "1", "--seed", "3")
    rows = [json.loads((tmp_path / r / "history.json").read_text())[0] for r in ("a", "b", "c")]
    assert rows[0]["loss"] == rows[1]["loss"] == rows[2]["loss"] and rows[0]["maxF"] == rows[2]["maxF"]


def test_the_relay_goes_on_from_the_committed_state(tmp_path: Path) -> None:
    """A fresh machine resumes the relay from weights/bgcut-s/relay/ (weights/recipes/relay.py):
    the committed weights load into the architecture they were trained as, and train on."""
    relay = Path(__file__).resolve().parent.parent / "weights" / "bgcut-s" / "relay"
    config = json.loads((relay / "config.json").read_text())
    training = config["training"]
    history = json.loads((relay / "history.json").read_text())
    assert history and all("maxF" in row and "cpu_seconds" in row for row in history)
    make_pairs(tmp_path, n=6)
    extra = ["--arch-args", json.dumps(training["arch_args"])] if training["arch_args"] else []
    code, output = _train(tmp_path, "next", "-m", training["model"], *extra, "--init",
                          str(relay / "model.safetensors"), "--epochs", "1")  # fmt: skip
    assert code == 0, output
    assert f"initialised from {relay / 'model.safetensors'}" in output
    assert json.loads((tmp_path / "next" / "config.json").read_text())["arch"] == config["arch"]


def test_committing_a_relay_segment_keeps_the_history_and_the_better_weights(tmp_path: Path) -> None:
    import importlib.util

    path = Path(__file__).resolve().parent.parent / "weights" / "recipes" / "relay.py"
    spec = importlib.util.spec_from_file_location("relay_recipe", path)
    relay_recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(relay_recipe)  # type: ignore[union-attr]

    def run(name: str, scores: list[float], weights: bytes) -> Path:
        folder = tmp_path / name
        folder.mkdir(exist_ok=True)
        (folder / "best.safetensors").write_bytes(weights)
        training = {"model": "bgcut-s", "arch_args": {}, "size": 384, "batch_size": 8, "lr": 0.001, "ema": 0.999,
                    "epochs": len(scores), "backgrounds": f"bg-{name}", "boundary_gain": 4.0}  # fmt: skip
        (folder / "config.json").write_text(json.dumps({"name": name, "training": training}))
        rows = [{"epoch": i + 1, "maxF": f, "mae": 0.05, "loss": 1 / (i + 1), "at": name} for i, f in enumerate(scores)]
        (folder / "history.json").write_text(json.dumps(rows))
        return folder

    committed = tmp_path / "relay"
    relay_recipe.commit(run("s1", [0.90, 0.93], b"one"), committed)
    relay_recipe.commit(run("s2", [0.91, 0.92], b"two"), committed)  # started afresh, never beat 0.93
    assert (committed / "model.safetensors").read_bytes() == b"one"
    assert "--backgrounds bg-s2 --boundary-gain 4.0" in relay_recipe.command(committed)  # s2's settings go on
    history = json.loads((committed / "history.json").read_text())
    assert [(r["segment"], r["maxF"]) for r in history] == [(1, 0.90), (1, 0.93), (2, 0.91), (2, 0.92)]
    relay_recipe.commit(run("s2", [0.91, 0.92, 0.94], b"three"), committed)  # s2 resumed: it goes on
    history = json.loads((committed / "history.json").read_text())
    assert [(r["segment"], r["maxF"]) for r in history] == [(1, 0.90), (1, 0.93), (2, 0.91), (2, 0.92), (2, 0.94)]
    assert (committed / "model.safetensors").read_bytes() == b"three"
    assert json.loads((committed / "config.json").read_text())["name"] == "s2"
