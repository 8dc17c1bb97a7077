"""``bgcut models import``: state dicts and ONNX exports (folded batch norm, anonymous names)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from bgcut.cli import app
from bgcut.models import build_arch, create_model, get_pretrained_cfg
from bgcut.models._import import _conv_execution_order

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

runner = CliRunner()


def random_u2netp() -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_arch(get_pretrained_cfg("u2netp"))
    for m in model.modules():  # non-trivial batch-norm statistics, so folding them matters
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return model.eval()


def export_folded_onnx(model: torch.nn.Module, path: Path, drop_last: bool = False) -> None:
    """What exporters produce: BN folded into each conv, anonymous fp16 initializers behind Cast nodes."""
    modules = dict(model.named_modules())
    inits, nodes = [], []
    order = _conv_execution_order(model)
    if drop_last:
        order = order[:-1]
    for i, name in enumerate(order):
        conv = modules[name]
        w, b = conv.weight.detach().double(), conv.bias.detach().double()
        bn = modules.get(name.rsplit(".", 1)[0] + ".bn_s1") if name.endswith("conv_s1") else None
        if bn is not None:
            scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
            w = w * scale.view(-1, 1, 1, 1)
            b = (b - bn.running_mean.double()) * scale + bn.bias.double()
        for kind, t in (("w", w), ("b", b)):
            inits.append(
                numpy_helper.from_array(t.detach().float().numpy().astype(np.float16), f"onnx::Conv_{i}{kind}")
            )
            nodes.append(helper.make_node("Cast", [f"onnx::Conv_{i}{kind}"], [f"c{i}{kind}"], to=TensorProto.FLOAT))
        nodes.append(helper.make_node("Conv", ["x", f"c{i}w", f"c{i}b"], [f"y{i}"], name=f"/conv{i}"))
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info(f"y{len(order) - 1}", TensorProto.FLOAT, None)], inits,
    )  # fmt: skip
    onnx.save(helper.make_model(graph), str(path))


def test_import_state_dict_roundtrip(tmp_path: Path) -> None:
    model = random_u2netp()
    torch.save({"state_dict": model.state_dict()}, tmp_path / "u2netp.pth")
    args = ["models", "import", str(tmp_path / "u2netp.pth"), "--arch", "u2net", "--name", "u2netp"]
    result = runner.invoke(app, [*args, "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["arch"] == "u2net" and config["arch_args"] == {"small": True} and config["output"] == "sigmoid-minmax"
    loaded = create_model(weights=tmp_path / "out").module
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        assert torch.equal(loaded(x), model(x))


def test_import_onnx_with_folded_batch_norm(tmp_path: Path) -> None:
    model = random_u2netp()
    export_folded_onnx(model, tmp_path / "m.onnx")
    result = runner.invoke(app, ["models", "import", str(tmp_path / "m.onnx"), "--arch", "u2net", "--name", "u2netp",
                                 "-o", str(tmp_path / "out")])  # fmt: skip
    assert result.exit_code == 0, result.output
    loaded = create_model(weights=tmp_path / "out").module
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        ours, ref = loaded(x), model(x)
    # fp16 weights: equal up to half-precision rounding of the folded tensors
    assert torch.allclose(ours, ref, atol=2e-2, rtol=2e-2)
    assert (torch.sigmoid(ours) - torch.sigmoid(ref)).abs().max() < 5e-3


@pytest.mark.parametrize(
    ("arch", "drop_last", "message"),
    [
        ("isnet", False, "where stage1.rebnconvin.conv_s1.weight needs (64, 64, 3, 3)"),
        ("u2net", True, "has 118 convolutions, architecture U2Net has 119"),
    ],
)
def test_import_refuses_tensors_that_do_not_fit(tmp_path: Path, arch: str, drop_last: bool, message: str) -> None:
    export_folded_onnx(random_u2netp(), tmp_path / "m.onnx", drop_last=drop_last)
    name = "isnet-general" if arch == "isnet" else "u2netp"
    result = runner.invoke(app, ["models", "import", str(tmp_path / "m.onnx"), "--arch", arch, "--name", name,
                                 "-o", str(tmp_path / "out")])  # fmt: skip
    assert result.exit_code == 1
    (line,) = result.output.strip().splitlines()
    assert line.startswith("bgcut: error: ") and message in line
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_import_refuses_wrong_state_dict(tmp_path: Path) -> None:
    state = random_u2netp().state_dict()
    state.pop("side1.weight")
    torch.save(state, tmp_path / "bad.pth")
    result = runner.invoke(app, ["models", "import", str(tmp_path / "bad.pth"), "--arch", "u2net", "--name", "u2netp",
                                 "-o", str(tmp_path / "out")])  # fmt: skip
    assert result.exit_code == 1 and "missing: side1.weight" in result.output


def test_imported_model_is_found_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BGCUT_HOME", str(tmp_path / "home"))
    torch.save(random_u2netp().state_dict(), tmp_path / "u.pth")
    result = runner.invoke(app, ["models", "import", str(tmp_path / "u.pth"), "--arch", "u2net", "--name", "u2netp"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "home" / "models" / "u2netp" / "model.safetensors").exists()
    listed = runner.invoke(app, ["models", "list", "u2netp"]).output.splitlines()[1].split()
    assert listed[0] == "u2netp" and listed[-1] == "imported"
    assert create_model("u2netp").cfg.name == "u2netp"


@pytest.mark.skipif(not os.environ.get("BGCUT_ISNET_ONNX"), reason=(
    "parity with the IS-Net reference needs BGCUT_ISNET_ONNX=/path/isnet.onnx (from ../shared/scripts/get-isnet-onnx) "
    "and onnxruntime; optional BGCUT_PARITY_IMAGES (default ../shared/data/eval/davis16/images)"))  # fmt: skip
def test_isnet_parity_with_reference_onnx(tmp_path: Path) -> None:
    """bgcut --model isnet-general vs onnxruntime on the reference ONNX, image by image."""
    ort = pytest.importorskip("onnxruntime")
    from PIL import Image

    from bgcut import OutputOptions, RunOptions, remove_backgrounds

    onnx_path = Path(os.environ["BGCUT_ISNET_ONNX"])
    images = Path(os.environ.get("BGCUT_PARITY_IMAGES", Path(__file__).parents[2] / "shared/data/eval/davis16/images"))
    runner.invoke(app, ["models", "import", str(onnx_path), "--arch", "isnet", "--name", "isnet-general",
                        "-o", str(tmp_path / "w")], catch_exceptions=False)  # fmt: skip
    remove_backgrounds([str(images)], tmp_path / "ours", RunOptions(weights=str(tmp_path / "w"), batch_size=1),
                       OutputOptions(format="mask"), progress=False)  # fmt: skip
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    for path in sorted(images.iterdir()):
        im = Image.open(path).convert("RGB")
        x = (np.asarray(im.resize((1024, 1024), Image.BILINEAR), np.float32) - 128) / 256
        ref = session.run(None, {"input": x.transpose(2, 0, 1)[None]})[0][0, 0]
        ref = np.asarray(Image.fromarray(ref, "F").resize(im.size, Image.BILINEAR))
        ours = np.asarray(Image.open(tmp_path / "ours" / f"{path.stem}.png"), np.float32) / 255
        mad = float(np.abs(ours - ref).mean())
        union = ((ours >= 0.5) | (ref >= 0.5)).sum()
        iou = ((ours >= 0.5) & (ref >= 0.5)).sum() / union if union else 1.0  # both empty: they agree
        assert mad <= 1 / 255 and iou >= 0.995, f"{path.name}: mean abs diff {mad * 255:.2f}/255, IoU {iou:.4f}"
