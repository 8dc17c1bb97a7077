"""Training: ``train(TrainConfig)`` fits a registered architecture on image/mask pairs.

``TrainConfig`` (``options.py``) is imported without torch; ``train`` loads the loop when asked for.
"""

from __future__ import annotations

from typing import Any

from .options import TrainConfig

__all__ = ["TrainConfig", "train"]


def __getattr__(name: str) -> Any:
    if name == "train":
        from .loop import train

        return train
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
