"""Registry, architectures and weight loading."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from bgcut.config import DEFAULT_MODEL, FAST_MODEL
from bgcut.errors import UnknownModelError, WeightsMismatchError
from bgcut.models import build_arch, create_model, get_pretrained_cfg, list_models, load_into, sha256_file
from bgcut.models._hub import embedded_path
from bgcut.models._weights import QSCALE, dequantize, quantize, read_state_dict


@pytest.mark.parametrize("name", list_models())
def test_every_cfg_is_complete(name: str) -> None:
    cfg = get_pretrained_cfg(name)
    assert cfg.hf_repo_id and cfg.hf_revision and cfg.hf_filename.endswith(".safetensors")
    assert len(cfg.mean) == 3 and len(cfg.std) == 3 and cfg.input_size >= 32
    assert cfg.license != "unknown" and cfg.output in ("sigmoid", "sigmoid-minmax")


@pytest.mark.parametrize("name", list_models())
def test_forward_shape(name: str) -> None:
    model = build_arch(get_pretrained_cfg(name)).eval()
    with torch.inference_mode():
        out = model(torch.zeros(2, 3, 64, 96))
    assert tuple(out.shape) == (2, 1, 64, 96)


def test_training_mode_returns_deep_supervision() -> None:
    model = build_arch(get_pretrained_cfg("bgcut-lite")).train()
    outs = model(torch.zeros(2, 3, 64, 64))
    assert isinstance(outs, list) and len(outs) == 4 and all(o.shape == (2, 1, 64, 64) for o in outs)


def test_default_model_is_embedded_and_checksummed() -> None:
    assert DEFAULT_MODEL == "isnet-general" and FAST_MODEL == "bgcut-lite"
    sizes = 0
    for name in (DEFAULT_MODEL, FAST_MODEL, "bgcut-s"):
        cfg = get_pretrained_cfg(name)
        path = embedded_path(cfg)
        assert path is not None, f"{name}'s weights must ship inside the package"
        assert cfg.sha256 and sha256_file(path) == cfg.sha256
        sizes += path.stat().st_size
    assert sizes < 60 * 2**20, "the wheel must stay well under PyPI's 100 MB"
    loaded = create_model()  # no network needed
    assert loaded.cfg.name == DEFAULT_MODEL and loaded.sha256 == get_pretrained_cfg(DEFAULT_MODEL).sha256
    conv = loaded.module.stage1.rebnconvin.conv_s1.weight
    assert conv.dtype == torch.float32 and torch.isfinite(conv).all()  # int8 on disk, fp32 in the network


def test_int8_storage_round_trip() -> None:
    torch.manual_seed(0)
    state = {
        "conv.weight": torch.randn(8, 4, 3, 3),
        "conv.bias": torch.randn(8),
        "bn.num_batches_tracked": torch.tensor(3),
    }
    stored = quantize(state, "int8")
    assert stored["conv.weight"].dtype == torch.int8 and stored["conv.weight" + QSCALE].shape == (8, 1, 1, 1)
    assert stored["conv.bias"].dtype == torch.float32 and stored["bn.num_batches_tracked"].dtype == torch.int64
    back = dequantize(stored)
    assert set(back) == set(state)
    # Per output channel, the error is at most half a step of that channel's scale.
    step = state["conv.weight"].abs().amax(dim=(1, 2, 3), keepdim=True) / 127
    assert ((back["conv.weight"] - state["conv.weight"]).abs() <= step / 2 + 1e-7).all()
    assert torch.equal(back["conv.bias"], state["conv.bias"])
    half = quantize(state, "fp16")
    assert half["conv.weight"].dtype == torch.float16
    assert torch.equal(dequantize(half)["conv.weight"], half["conv.weight"])


def test_int8_file_reads_back_as_fp32(tmp_path: Path) -> None:
    model = build_arch(get_pretrained_cfg("bgcut-lite")).eval()
    path = tmp_path / "m.safetensors"
    save_file(quantize(model.state_dict(), "int8"), str(path))
    state = read_state_dict(path)
    assert all(v.dtype != torch.int8 for v in state.values()) and not any(k.endswith(QSCALE) for k in state)
    other = build_arch(get_pretrained_cfg("bgcut-lite")).eval()
    load_into(other, state, path)
    x = torch.rand(1, 3, 64, 64)
    with torch.inference_mode():
        assert (torch.sigmoid(model(x)) - torch.sigmoid(other(x))).abs().max() < 0.02


def test_unknown_model() -> None:
    with pytest.raises(UnknownModelError, match="unknown model 'x'"):
        get_pretrained_cfg("x")


def test_mismatched_weights_are_refused(tmp_path: Path) -> None:
    p = tmp_path / "bad.safetensors"
    save_file({"scale": torch.zeros(3)}, str(p))
    with pytest.raises(WeightsMismatchError, match="missing: offset; shape: scale"):
        _load_luma(p)


def _load_luma(p: Path) -> None:
    from bgcut.models._weights import load_into
    from bgcut.models.luma import LumaTest

    load_into(LumaTest(), read_state_dict(p), p)


def test_pth_state_dict_without_pickle_code(tmp_path: Path) -> None:
    p = tmp_path / "w.pth"
    torch.save({"state_dict": {"module.scale": torch.tensor(1.0), "module.offset": torch.tensor(0.0)}}, p)
    assert set(read_state_dict(p)) == {"scale", "offset"}


def test_truncated_safetensors_is_a_clear_error(tmp_path: Path, luma_weights: Path) -> None:
    p = tmp_path / "t.safetensors"
    p.write_bytes((luma_weights / "model.safetensors").read_bytes()[:20])
    with pytest.raises(WeightsMismatchError, match="cannot read weights .* damaged or truncated; download it again"):
        read_state_dict(p)


@pytest.mark.parametrize("name", list_models())
def test_model_card_config_matches_registry(name: str) -> None:
    """weights/<name>/config.json is what the Hub repo holds; it must not drift from the registry."""
    import json

    cfg = get_pretrained_cfg(name)
    folder = Path(__file__).parent.parent / "weights" / name
    card = json.loads((folder / "config.json").read_text())
    assert (folder / "README.md").is_file()
    assert card["sha256"] == cfg.sha256 and card["input_size"] == cfg.input_size and card["arch"] == cfg.arch
    assert card["hf_repo_id"] == cfg.hf_repo_id and card["hf_revision"] == cfg.hf_revision
    assert {k: card[k] for k in cfg.to_json()} == cfg.to_json()


def test_default_model_finds_an_obvious_object() -> None:
    """A red disc on a noisy grey background: the embedded weights must cut out the disc."""
    import cv2
    import numpy as np

    from bgcut import Remover

    img = np.full((300, 400, 3), 170, np.uint8)
    img = np.clip(img + np.random.default_rng(0).integers(-12, 12, img.shape), 0, 255).astype(np.uint8)
    cv2.circle(img, (200, 150), 80, (200, 30, 30), -1)
    disc = np.zeros((300, 400), np.uint8)
    cv2.circle(disc, (200, 150), 80, 1, -1)
    pred = Remover(device="cpu").masks([img])[0] >= 128
    iou = (pred & disc.astype(bool)).sum() / (pred | disc.astype(bool)).sum()
    assert iou > 0.9


@pytest.mark.parametrize("name", ["bgcut-lite", "u2netp"])
def test_fused_batch_norm_gives_the_same_output(name: str) -> None:
    import copy

    from bgcut.models._fuse import fuse_conv_bn

    torch.manual_seed(0)
    model = build_arch(get_pretrained_cfg(name))
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.3, 0.3)
            m.running_var.uniform_(0.5, 2.0)
    model.eval()
    fused = fuse_conv_bn(copy.deepcopy(model))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        assert torch.allclose(fused(x), model(x), atol=1e-4, rtol=1e-4)


def test_unpublished_model_says_how_to_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bgcut.errors import WeightsUnavailableError

    monkeypatch.setenv("BGCUT_HOME", str(tmp_path))
    with pytest.raises(
        WeightsUnavailableError, match=r"no published weights yet: convert .*--arch u2net --name u2net`"
    ):
        create_model("u2net")


def test_the_real_default_on_two_sample_photos(tmp_path: Path) -> None:
    """The README's first command on two of its sample photos, with the embedded default (isnet-general)."""
    import json
    import shutil

    import numpy as np
    from PIL import Image
    from typer.testing import CliRunner

    from bgcut.cli import app

    photos = Path(__file__).parent / "photos"
    src = tmp_path / "in"
    src.mkdir()
    for name in ("astronaut.jpg", "coffee.jpg"):
        shutil.copy(photos / name, src / name)
    manifest = tmp_path / "run.jsonl"
    result = CliRunner().invoke(app, [str(src), "-o", str(tmp_path / "out"), "--manifest", str(manifest), "-j", "0"])
    assert result.exit_code == 0, result.output
    assert "2 done, 0 skipped, 0 failed" in result.output
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert {r["model"] for r in rows} == {DEFAULT_MODEL}
    # (x, y) inside the subject, then in the background: the astronaut's face and suit, the flag and
    # the wall behind her; the cup and the saucer, the table top at two corners.
    for name, inside, outside in (
        ("astronaut", [(256, 90), (200, 300)], [(10, 10), (500, 20)]),
        ("coffee", [(300, 120), (300, 330)], [(10, 10), (590, 390)]),
    ):
        with Image.open(tmp_path / "out" / f"{name}.png") as im:
            assert im.mode == "RGBA"
            alpha = np.asarray(im)[..., 3]
        assert all(alpha[y, x] == 255 for x, y in inside), name
        assert all(alpha[y, x] == 0 for x, y in outside), name
        assert 0.3 < (alpha > 128).mean() < 0.7, name


@pytest.mark.parametrize(
    ("config", "error"),
    [
        ([], "expected a JSON object of the model's settings, got list"),
        (None, "expected a JSON object of the model's settings, got NoneType"),
        ("abc", "expected a JSON object of the model's settings, got str"),
        ({"arch": "unet_lite", "input_size": 0}, "'input_size' must be a whole number of pixels from 32 to 4096"),
        ({"arch": "unet_lite", "input_size": 100000}, "'input_size' must be a whole number of pixels from 32 to 4096"),
        ({"arch": "unet_lite", "mean": [1]}, "'mean' must be three finite numbers, one per channel, got [1]"),
        ({"arch": "unet_lite", "std": [0, 0, 0]}, "'std' must be above 0 (it divides the pixels), got [0, 0, 0]"),
        ({"arch": "unet_lite", "arch_args": {"evil": 1}}, "'arch_args' has 'evil', which architecture 'unet_lite'"),
        ({"arch": "unet_lite", "arch_args": {"widths": [1_000_000] * 5}}, "'arch_args' make a network of"),
        ({"arch": "isnet", "arch_args": {"width": 0.3}}, "'arch_args' do not build a isnet: isnet width 0.3"),
        ({"arch": "nope"}, "unknown architecture 'nope'"),
    ],
)
def test_odd_config_json_is_one_line(tmp_path: Path, luma_weights: Path, config: object, error: str) -> None:
    """Before: tracebacks of 46 to 65 lines, a ZeroDivisionError, a 16 TB allocation, or (std 0) exit 0
    with all-transparent outputs."""
    import json
    import shutil

    from typer.testing import CliRunner

    from bgcut.cli import app

    folder = tmp_path / "w"
    folder.mkdir()
    shutil.copy(luma_weights / "model.safetensors", folder / "model.safetensors")
    (folder / "config.json").write_text(json.dumps(config))
    (tmp_path / "p.png").write_bytes((Path(__file__).parent / "photos" / "camera.png").read_bytes())
    result = CliRunner().invoke(app, [str(tmp_path / "p.png"), "-o", str(tmp_path / "o"), "-w", str(folder)])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"bgcut: error: {folder / 'config.json'}: ") and error in lines[0]
    assert not (tmp_path / "o").exists()


def test_weights_whose_checksum_matched_are_not_scanned(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from bgcut.models import _weights

    scanned: list[Path] = []
    real = _weights._finite
    monkeypatch.setattr(_weights, "_finite", lambda state, path: scanned.append(path) or real(state, path))
    create_model("bgcut-lite", device="cpu")  # embedded: its sha256 is the registry's
    assert scanned == []
    loose = tmp_path / "w.safetensors"  # a file no checksum vouches for is still scanned
    loose.write_bytes(embedded_path(get_pretrained_cfg("bgcut-lite")).read_bytes())  # type: ignore[union-attr]
    create_model("bgcut-lite", weights=str(loose), device="cpu")
    assert scanned == [loose]
