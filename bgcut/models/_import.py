"""Converting public checkpoints into bgcut's format (``model.safetensors`` + ``config.json``).

Two sources:
- a PyTorch state dict (``.pth``/``.pt``), read with ``torch.load(weights_only=True)``; its
  names must already match the architecture (the U2-Net family's do);
- an ONNX export, read from its initializers with the ``onnx`` package (``pip install
  bgcut[import]``). Exporters fold batch norm into the convolutions and give the folded
  tensors anonymous names (``onnx::Conv_1896``), so names cannot be matched. Instead the
  graph's Conv nodes, in graph order, are paired with our convolutions in the order the
  forward pass runs them, every shape is checked, and each batch norm that followed a
  folded convolution is set to the identity.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..config import DEFAULT_STORAGE, STORAGES, PretrainedCfg
from ..errors import UsageError, WeightsMismatchError
from ._registry import build_arch
from ._weights import load_into, quantize, read_state_dict, save_tensors, sha256_file


def _conv_execution_order(model: nn.Module) -> list[str]:
    """Qualified names of the Conv2d modules in the order a forward pass calls them.

    The pass runs in training mode, which computes every output head: exports keep all of
    them (IS-Net's six side outputs), while our inference pass skips the unused ones.
    """
    # A copy: training-mode batch norm would update the model's running statistics and batch counter.
    probe = copy.deepcopy(model).train()
    order: list[str] = []
    for name, mod in probe.named_modules():
        if isinstance(mod, nn.Conv2d):
            mod.register_forward_hook(lambda m, i, o, name=name: order.append(name))
    with torch.inference_mode():
        probe(torch.zeros(2, 3, 64, 64))  # batch 2: training-mode batch norm needs more than one value
    return order


def _onnx_convs(path: Path) -> list[tuple[str, np.ndarray, np.ndarray | None]]:
    """(node name, weight, bias) of every Conv node, in graph order, following Casts to initializers."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise UsageError("importing ONNX files needs the onnx package: pip install 'bgcut[import]'") from None
    try:
        graph = onnx.load(str(path)).graph
    except Exception as e:  # noqa: BLE001 - onnx raises DecodeError and friends
        raise WeightsMismatchError(f"{path} is not a readable ONNX model: {e}") from None
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    consts = {
        n.output[0]: numpy_helper.to_array(n.attribute[0].t)
        for n in graph.node
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value"
    }
    producer = {out: n for n in graph.node for out in n.output}

    def tensor(name: str) -> np.ndarray:
        seen = 0
        while name not in inits and name not in consts:
            node = producer.get(name)
            if node is None or node.op_type not in ("Cast", "Identity", "DequantizeLinear") or seen > 4:
                raise WeightsMismatchError(f"{path}: Conv input {name!r} is not a constant tensor")
            name, seen = node.input[0], seen + 1
        return (inits.get(name) if name in inits else consts[name]).astype(np.float32)

    convs = []
    for n in graph.node:
        if n.op_type == "Conv":
            bias = tensor(n.input[2]) if len(n.input) > 2 and n.input[2] else None
            convs.append((n.name or n.output[0], tensor(n.input[1]), bias))
    return convs


def state_dict_from_onnx(path: Path, model: nn.Module) -> dict[str, torch.Tensor]:
    order = _conv_execution_order(model)
    convs = _onnx_convs(path)
    if len(convs) != len(order):
        raise WeightsMismatchError(
            f"{path} has {len(convs)} convolutions, architecture {type(model).__name__} has {len(order)}"
        )
    modules = dict(model.named_modules())
    state = {k: v.clone() for k, v in model.state_dict().items()}
    for name, (node, weight, bias) in zip(order, convs, strict=True):
        conv = modules[name]
        if tuple(weight.shape) != tuple(conv.weight.shape):
            raise WeightsMismatchError(
                f"{path}: Conv {node} has shape {tuple(weight.shape)}, "
                f"where {name}.weight needs {tuple(conv.weight.shape)}"
            )
        state[f"{name}.weight"] = torch.from_numpy(weight)
        b = torch.from_numpy(bias) if bias is not None else torch.zeros(weight.shape[0])
        if f"{name}.bias" not in state:
            raise WeightsMismatchError(f"{path}: Conv {node} has a bias but {name} has none")
        state[f"{name}.bias"] = b
        # The batch norm after this conv was folded into it by the exporter: make ours the identity.
        bn_prefix = name.rsplit(".", 1)[0] + ".bn_s1" if name.endswith("conv_s1") else None
        if bn_prefix and f"{bn_prefix}.weight" in state:
            bn = modules[bn_prefix]
            state[f"{bn_prefix}.weight"] = torch.ones_like(state[f"{bn_prefix}.weight"])
            state[f"{bn_prefix}.bias"] = torch.zeros_like(state[f"{bn_prefix}.bias"])
            state[f"{bn_prefix}.running_mean"] = torch.zeros_like(state[f"{bn_prefix}.running_mean"])
            state[f"{bn_prefix}.running_var"] = torch.full_like(state[f"{bn_prefix}.running_var"], 1 - bn.eps)
    return state


def import_checkpoint(
    source: Path, cfg: PretrainedCfg, output: Path, storage: str = DEFAULT_STORAGE
) -> tuple[Path, str]:
    """Convert ``source`` for ``cfg``'s architecture; writes ``output/model.safetensors`` + ``config.json``,
    its tensors stored as ``storage`` (``config.STORAGES``). The conversion is deterministic: the
    same source and storage give the same sha256.

    Raises:
        WeightsMismatchError: the tensors do not fit the architecture (names, shapes, dtypes).
        UsageError: an ONNX file without the ``onnx`` package installed.
    """
    if storage not in STORAGES:
        raise UsageError(f"--storage {storage!r}: expected one of {', '.join(STORAGES)}")
    model = build_arch(cfg)
    is_onnx = source.suffix.lower() == ".onnx"
    state = state_dict_from_onnx(source, model) if is_onnx else read_state_dict(source)
    load_into(model, state, source)  # the strict check: names, shapes, dtypes
    output.mkdir(parents=True, exist_ok=True)
    target = output / "model.safetensors"
    tensors = {
        k: v.detach().float().contiguous() if v.is_floating_point() else v for k, v in model.state_dict().items()
    }
    save_tensors(quantize(tensors, storage), target)
    sha = sha256_file(target)
    config = {
        **cfg.to_json(),
        "sha256": sha,
        "storage": storage,
        "source": source.name,
        "source_sha256": sha256_file(source),
    }
    (output / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return target, sha
