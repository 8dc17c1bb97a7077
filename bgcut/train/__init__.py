"""Training: ``train(TrainConfig)`` fits a registered architecture on image/mask pairs."""

from .loop import TrainConfig, train

__all__ = ["TrainConfig", "train"]
