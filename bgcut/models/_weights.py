"""Reading weight files into modules: safetensors first, ``.pth`` state dicts without pickle code."""

from __future__ import annotations

import hashlib
import os
import pickle
import warnings
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from ..errors import ChecksumError, WeightsMismatchError, WeightsUnavailableError


def _umask() -> int:
    try:  # Linux: read it without changing it (changing it is not thread-safe)
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def save_tensors(tensors: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None) -> None:
    """``safetensors.torch.save_file`` with the permissions any other file would get.

    safetensors creates its files with mode 0600 whatever the umask, so weights imported for a
    team's shared cache could not be read by the rest of the team.
    """
    save_file(tensors, str(path), metadata=metadata)
    os.chmod(path, 0o666 & ~_umask())


# Suffix of the per-output-channel scales stored beside an int8 tensor (``quantize``).
QSCALE = ".qscale"


def quantize(state: dict[str, torch.Tensor], storage: str) -> dict[str, torch.Tensor]:
    """Tensors for a weights file in ``storage`` (``config.STORAGES``): fp32, fp16, or int8.

    int8 keeps every convolution and linear weight (2 or more dimensions, nearly all the bytes)
    as symmetric per-output-channel integers with their fp32 scales beside them (``NAME.qscale``);
    biases and batch-norm tensors stay fp32. ``read_state_dict`` turns it back into fp32, so a
    network never computes in int8: only the file is smaller.
    """
    out: dict[str, torch.Tensor] = {}
    for name, t in state.items():
        if not t.is_floating_point() or storage == "fp32":
            out[name] = t.contiguous()
        elif storage == "fp16":
            out[name] = t.half().contiguous()
        elif t.ndim >= 2:
            dims = tuple(range(1, t.ndim))
            scale = t.float().abs().amax(dim=dims, keepdim=True).clamp(min=1e-12) / 127
            out[name] = (t.float() / scale).round().clamp(-127, 127).to(torch.int8).contiguous()
            out[name + QSCALE] = scale.contiguous()
        else:
            out[name] = t.float().contiguous()
    return out


def dequantize(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The fp32 tensors of a file written by ``quantize`` (any storage); other files pass unchanged."""
    scales = {k.removesuffix(QSCALE): v for k, v in state.items() if k.endswith(QSCALE)}
    out = {}
    for name, t in state.items():
        if name.endswith(QSCALE):
            continue
        scale = scales.get(name)
        if scale is not None and t.dtype == torch.int8:
            out[name] = t.float() * scale
        else:
            out[name] = t
    return out


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify_sha256(path: Path, expected: str | None, model: str, remedy: str | None = None) -> str:
    """Return the file's sha256; raise ``ChecksumError`` when it is not ``expected``."""
    actual = sha256_file(path)
    if expected and actual != expected:
        remedy = remedy or f"delete it and run `bgcut models fetch {model} --force`"
        raise ChecksumError(
            f"weights {path} for model {model!r} have sha256 {actual[:12]}…, expected {expected[:12]}…: "
            f"the file is corrupt or truncated; {remedy}"
        )
    return actual


def read_state_dict(path: Path, checksummed: bool = False) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` file, or of a ``.pth``/``.pt`` state dict (never unpickling code).

    ``checksummed``: the file's sha256 matched a known one, so its values are not scanned for NaN."""
    if not path.is_file():
        raise WeightsUnavailableError(f"weights file {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            state = dequantize(load_file(str(path)))
            return state if checksummed else _finite(state, path)
        with warnings.catch_warnings():
            # torch warns in two lines about what the file holds before it refuses it; bgcut's
            # one line below says so.
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # torch's own message suggests weights_only=False, i.e. running the file's code: never.
        raise WeightsMismatchError(
            f"cannot read weights {path}: not a state dict of tensors (it holds other Python objects, or is not "
            "a checkpoint at all); bgcut never runs code from a weights file: export the state dict, or use safetensors"
        ) from None
    except (SafetensorError, RuntimeError, OSError, EOFError, ValueError, KeyError, IndexError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise WeightsMismatchError(
            f"cannot read weights {path} ({reason}): the file is damaged or truncated; "
            "download it again (`bgcut models fetch NAME --force`) or re-export it"
        ) from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsMismatchError(f"{path} is not a state dict of tensors")
    return _finite({k.removeprefix("module."): v for k, v in obj.items()}, path)


def _finite(state: dict[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    """Refuse weights with NaN or infinite values: damaged bytes, which would otherwise run and
    write empty or random masks with exit status 0."""
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise WeightsMismatchError(
                f"weights {path}: tensor {name} holds NaN or infinite values; the file is damaged: "
                "download it again (`bgcut models fetch NAME --force`) or re-export it"
            )
    return state


def load_into(model: nn.Module, state: dict[str, torch.Tensor], source: Path | str) -> None:
    """Strict load with a one-line report of what does not fit (names, shapes, dtypes)."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    bad_shape = [
        f"{k} {tuple(state[k].shape)} != {tuple(own[k].shape)}"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    bad_dtype = [
        f"{k} {state[k].dtype}"
        for k in own
        if k in state and state[k].is_floating_point() != own[k].is_floating_point()
    ]
    problems = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("shape", bad_shape), ("dtype", bad_dtype)):
        if items:
            more = f" (+{len(items) - 3} more)" if len(items) > 3 else ""
            problems.append(f"{label}: {', '.join(items[:3])}{more}")
    if problems:
        raise WeightsMismatchError(
            f"weights {source} do not fit architecture {type(model).__name__}: {'; '.join(problems)}"
        )
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})
