"""Registries of architectures (name -> nn.Module class) and models (name -> PretrainedCfg).

Family modules register themselves on import (``bgcut.models.__init__`` imports them
all), so adding a model is adding one ``PretrainedCfg`` next to its architecture.
"""

from __future__ import annotations

import fnmatch
import warnings
from collections.abc import Callable

from torch import nn

from ..config import PretrainedCfg
from ..errors import UnknownModelError

_ARCHS: dict[str, type[nn.Module]] = {}
_MODELS: dict[str, PretrainedCfg] = {}


def register_arch(name: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    def wrap(cls: type[nn.Module]) -> type[nn.Module]:
        if name in _ARCHS and _ARCHS[name] is not cls:
            warnings.warn(f"architecture {name!r} registered twice; the later one wins", stacklevel=2)
        _ARCHS[name] = cls
        return cls

    return wrap


def register_model(cfg: PretrainedCfg) -> PretrainedCfg:
    if cfg.arch not in _ARCHS:
        raise ValueError(f"model {cfg.name!r} names unknown architecture {cfg.arch!r}")
    if cfg.name in _MODELS and _MODELS[cfg.name] != cfg:
        warnings.warn(f"model {cfg.name!r} registered twice; the later one wins", stacklevel=2)
    _MODELS[cfg.name] = cfg
    return cfg


def list_models(pattern: str = "*") -> list[str]:
    return sorted(n for n in _MODELS if fnmatch.fnmatch(n, pattern))


def get_pretrained_cfg(name: str) -> PretrainedCfg:
    try:
        return _MODELS[name]
    except KeyError:
        known = ", ".join(list_models()) or "none"
        raise UnknownModelError(f"unknown model {name!r}; known models: {known} (see `bgcut models list`)") from None


def get_arch(name: str) -> type[nn.Module]:
    try:
        return _ARCHS[name]
    except KeyError:
        raise UnknownModelError(f"unknown architecture {name!r}; known: {', '.join(sorted(_ARCHS))}") from None


def build_arch(cfg: PretrainedCfg) -> nn.Module:
    return get_arch(cfg.arch)(**cfg.arch_args)
