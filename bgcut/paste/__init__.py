"""``bgcut paste``: synthetic "cut, paste and learn" datasets from cut-outs (Dwibedi et al., ICCV 2017).

sources (cut-outs with classes, backgrounds) -> compose (one picture, exact visible masks)
-> annotations (COCO RLE, YOLO polygons) -> run (workers, resume, dataset files).
``options.py`` is imported without the rest (the CLI builds ``PasteOptions`` before any work).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from .options import BLENDS, PasteOptions

__all__ = ["BLENDS", "Composition", "PasteOptions", "PasteSummary", "Placed", "compose", "paste_dataset"]
_LAZY = {
    "Composition": "compose",
    "Placed": "compose",
    "compose": "compose",
    "PasteSummary": "run",
    "paste_dataset": "run",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
