"""``create_model``: name or weights path -> a ready, eval-mode module with its config.

``resolve_cfg`` is the one place a model name, a weights path or nothing (the default model)
becomes a config; ``create_model`` and the run's settings both go through it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from ..config import DEFAULT_MODEL, PretrainedCfg
from ..errors import UsageError, WeightsUnavailableError
from ._config import cfg_from_config_json
from ._hub import resolve_weights
from ._registry import build_arch, get_pretrained_cfg
from ._weights import load_into, read_state_dict, verify_sha256


@dataclass
class LoadedModel:
    module: nn.Module
    cfg: PretrainedCfg
    sha256: str


def _local_cfg(weights: Path, name: str | None) -> tuple[Path, PretrainedCfg, str | None]:
    """Resolve a ``--weights`` path, its config and the sha256 its config records (if any).

    A folder or file with ``config.json`` beside it describes itself; a bare file uses ``name``'s architecture.
    """
    if weights.is_dir():
        weights = weights / "model.safetensors"
    if not weights.exists():
        raise WeightsUnavailableError(f"weights file {weights} does not exist")
    config = weights.parent / "config.json"
    if config.is_file():
        try:
            data = json.loads(config.read_text())
        except json.JSONDecodeError as e:
            raise UsageError(f"{config}: not valid JSON ({e})") from None
        cfg = cfg_from_config_json(data, config, weights.parent.name)
        # `bgcut train` records the sha256 of the weights it wrote: damaged bytes are caught here.
        recorded = data.get("sha256") if weights.name == "model.safetensors" else None
        return weights, cfg, recorded if isinstance(recorded, str) else None
    return weights, replace(resolve_cfg(name), embedded=None, sha256=None), None


def resolve_cfg(name: str | None = None, weights: str | Path | None = None) -> PretrainedCfg:
    """The config a run with ``-m name`` / ``-w weights`` uses: the weights' own (``config.json``
    beside them, or ``name``'s architecture for a bare file), else the registry's entry for
    ``name``, else the default model's. Raises as ``create_model`` does for what it cannot find."""
    if weights is not None:
        return _local_cfg(Path(weights), name)[1]
    return get_pretrained_cfg(name or DEFAULT_MODEL)


def create_model(
    name: str | None = None,
    weights: str | Path | None = None,
    device: str | torch.device = "cpu",
    force_download: bool = False,
) -> LoadedModel:
    """Build a registered model (or the architecture described beside ``weights``) and load its weights.

    Raises:
        UnknownModelError: ``name`` is not registered.
        WeightsUnavailableError: no local weights and no way to download them.
        ChecksumError: the weights found do not match the registry's sha256.
        WeightsMismatchError: the tensors do not fit the architecture.
    """
    if weights is not None:
        path, cfg, recorded = _local_cfg(Path(weights), name)
        sha = verify_sha256(path, recorded, cfg.name, "its config.json records another sha256: copy or export it again")
        checked = recorded is not None
    else:
        cfg = resolve_cfg(name)
        path, sha = resolve_weights(cfg, force_download=force_download)
        checked = cfg.sha256 is not None
    module = build_arch(cfg)
    # A file whose sha256 matched a known one holds the bytes it was published with: scanning
    # every tensor for NaN again (56 ms of a one-photo run with bgcut-lite) would find nothing.
    load_into(module, read_state_dict(path, checksummed=checked), path)
    module.eval().to(device)
    return LoadedModel(module, cfg, sha)


def count_parameters(cfg: PretrainedCfg) -> int:
    with torch.device("meta"):
        module = build_arch(cfg)
    return sum(p.numel() for p in module.parameters())
