"""bgcut: cut the background out of images in bulk.

Public surface: ``remove`` (one image), ``Remover`` (a loaded model, batches),
``remove_backgrounds`` (folders and file lists, the engine behind the CLI),
``create_model`` / ``list_models`` (the zoo) and the option dataclasses.
Names are imported on first use, so ``import bgcut`` (and ``bgcut --version``) stays
cheap until torch is actually needed.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "remove": "bgcut.api",
    "Remover": "bgcut.api",
    "remove_backgrounds": "bgcut.run",
    "RunSummary": "bgcut.run",
    "OutputOptions": "bgcut.config",
    "PostOptions": "bgcut.config",
    "RunOptions": "bgcut.config",
    "create_model": "bgcut.models",
    "list_models": "bgcut.models",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'bgcut' has no attribute {name!r}")
