"""A ``config.json`` beside ``--weights`` is user input: checked here, once, field by field.

Each field's type and range is checked before anything is built, with a one-line error that
names the file and the field. The architecture's arguments must be ones its constructor
declares, and the network is first built on the ``meta`` device (no memory) so that a width of
a million is refused before it tries to allocate terabytes.
"""

from __future__ import annotations

import inspect
import math
from pathlib import Path
from typing import Any

import torch

from ..config import INTERPOLATIONS, MIN_SIZE, OUTPUT_RULES, PretrainedCfg
from ..errors import UnknownModelError, UsageError
from ._registry import get_arch

MAX_INPUT_SIZE = 4096  # px: IS-Net, the largest registered model, runs at 1024
MAX_PARAMETERS = 500_000_000  # over ten times the largest registered model


def _fail(path: Path, field: str, why: str) -> UsageError:
    return UsageError(f"{path}: {field!r} {why}")


def _triple(path: Path, field: str, value: object, positive: bool) -> tuple[float, float, float]:
    ok = isinstance(value, list) and len(value) == 3
    ok = ok and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)
    if not ok:
        raise _fail(path, field, f"must be three finite numbers, one per channel, got {value!r}"[:200])
    if positive and not all(v > 0 for v in value):  # type: ignore[union-attr]
        raise _fail(path, field, f"must be above 0 (it divides the pixels), got {value!r}")
    return tuple(float(v) for v in value)  # type: ignore[return-value, union-attr]


def cfg_from_config_json(data: object, path: Path, default_name: str) -> PretrainedCfg:
    """The ``PretrainedCfg`` a ``config.json`` describes, or a one-line ``UsageError``."""
    if not isinstance(data, dict):
        raise UsageError(f"{path}: expected a JSON object of the model's settings, got {type(data).__name__}")
    name = data.get("name", default_name)
    if not isinstance(name, str) or not name:
        raise _fail(path, "name", f"must be a non-empty string, got {name!r}")
    arch = data.get("arch")
    if not isinstance(arch, str):
        raise _fail(path, "arch", f"must name an architecture, got {arch!r}")
    try:
        cls = get_arch(arch)
    except UnknownModelError as e:
        raise UsageError(f"{path}: {e}") from None
    args = data.get("arch_args", {})
    if not isinstance(args, dict):
        raise _fail(path, "arch_args", f"must be an object of the architecture's arguments, got {args!r}"[:200])
    declared = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    for key in args:
        if key not in declared:
            known = ", ".join(declared) or "none"
            raise _fail(
                path, "arch_args", f"has {key!r}, which architecture {arch!r} does not take (it takes: {known})"
            )
    size = data.get("input_size", 320)
    if not isinstance(size, int) or isinstance(size, bool) or not MIN_SIZE <= size <= MAX_INPUT_SIZE:
        raise _fail(
            path, "input_size", f"must be a whole number of pixels from {MIN_SIZE} to {MAX_INPUT_SIZE}, got {size!r}"
        )
    fields: dict[str, Any] = {"name": name, "arch": arch, "arch_args": dict(args), "input_size": size}
    if "mean" in data:
        fields["mean"] = _triple(path, "mean", data["mean"], positive=False)
    if "std" in data:
        fields["std"] = _triple(path, "std", data["std"], positive=True)
    for field, allowed in (("output", OUTPUT_RULES), ("interpolation", INTERPOLATIONS)):
        if field in data:
            if data[field] not in allowed:
                raise _fail(path, field, f"must be one of {', '.join(allowed)}, got {data[field]!r}"[:200])
            fields[field] = data[field]
    if "license" in data:
        fields["license"] = str(data["license"])
    cfg = PretrainedCfg(**fields)
    _check_size(cls, cfg, path)
    return cfg


def _check_size(cls: type[torch.nn.Module], cfg: PretrainedCfg, path: Path) -> None:
    """Build the network on the meta device (no memory) and count its parameters."""
    try:
        with torch.device("meta"):
            module = cls(**cfg.arch_args)
    except (TypeError, ValueError) as e:
        raise _fail(path, "arch_args", f"do not build a {cfg.arch}: {str(e).splitlines()[0][:200]}") from None
    params = sum(p.numel() for p in module.parameters())
    if params > MAX_PARAMETERS:
        raise _fail(path, "arch_args", f"make a network of {params:,} parameters, over the limit of {MAX_PARAMETERS:,}")
