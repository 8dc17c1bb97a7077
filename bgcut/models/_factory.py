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
from ._hub import weights_file
from ._registry import build_arch, get_pretrained_cfg
from ._weights import load_into, read_state_dict


@dataclass
class LoadedModel:
    module: nn.Module
    cfg: PretrainedCfg
    sha256: str


def _source(name: str | None, weights: str | Path | None) -> tuple[PretrainedCfg, Path | None, str | None]:
    """The config of a run with ``-m name`` / ``-w weights`` and, for ``--weights``, the file and
    the sha256 its ``config.json`` records (if any).

    A folder or file with ``config.json`` beside it describes itself; a bare file uses ``name``'s
    architecture (the default model's without one); no weights, the registry's entry for ``name``.
    The registry is asked last in each branch, so the config and the network are both built
    from it in one go (``create_model``).
    """
    if weights is not None:
        path = Path(weights)
        if path.is_dir():
            path = path / "model.safetensors"
        if not path.exists():
            raise WeightsUnavailableError(f"weights file {path} does not exist")
        described = _described(path)
        if described is not None:
            return described[0], path, described[1]
        return replace(get_pretrained_cfg(name or DEFAULT_MODEL), embedded=None, sha256=None), path, None
    return get_pretrained_cfg(name or DEFAULT_MODEL), None, None


def _described(weights: Path) -> tuple[PretrainedCfg, str | None] | None:
    """The ``config.json`` beside a weights file, read: its config and the sha256 it records."""
    config = weights.parent / "config.json"
    if not config.is_file():
        return None
    try:
        data = json.loads(config.read_text())
    except json.JSONDecodeError as e:
        raise UsageError(f"{config}: not valid JSON ({e})") from None
    cfg = cfg_from_config_json(data, config, weights.parent.name)
    # `bgcut train` records the sha256 of the weights it wrote: damaged bytes are caught here.
    recorded = data.get("sha256") if weights.name == "model.safetensors" else None
    return cfg, recorded if isinstance(recorded, str) else None


def resolve_cfg(name: str | None = None, weights: str | Path | None = None) -> PretrainedCfg:
    """The config a run with ``-m name`` / ``-w weights`` uses (``_source``): the one place a model
    name, a weights path or nothing becomes a config. Raises as ``create_model`` does for what it
    cannot find."""
    return _source(name, weights)[0]


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
    cfg, given, recorded = _source(name, weights)
    module = build_arch(cfg)
    found = weights_file(cfg, given, recorded, force_download=force_download)
    # A file whose sha256 matched a known one holds the bytes it was published with: scanning
    # every tensor for NaN again (56 ms of a one-photo run with bgcut-lite) would find nothing.
    load_into(module, read_state_dict(found.path, checksummed=found.checked), found.path)
    module.eval().to(device)
    return LoadedModel(module, cfg, found.sha256)


def count_parameters(cfg: PretrainedCfg) -> int:
    with torch.device("meta"):
        module = build_arch(cfg)
    return sum(p.numel() for p in module.parameters())
