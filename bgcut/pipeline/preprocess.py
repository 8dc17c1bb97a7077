"""A model's input and output contract, applied (``PretrainedCfg``): resize a photo to the
model's square input with the config's resampler, normalise it with the config's mean and
std, and turn the network's logits into [0, 1] masks by the config's output rule.

Inference (the local engine, Ray and the Python API), training and training's validation all
call these, so a network is trained on exactly what it is later shown.
"""

from __future__ import annotations

import numpy as np
import torch

from ..config import PretrainedCfg
from ..images import model_input


def resize_for_model(rgb: np.ndarray, size: int, interpolation: str = "bilinear") -> torch.Tensor:
    """The model's input (``images.model_input``) as a 3 x size x size uint8 tensor."""
    return torch.from_numpy(model_input(rgb, size, interpolation))


def normalise(x: torch.Tensor, cfg: PretrainedCfg, scale: float = 255.0) -> torch.Tensor:
    """(B, 3, S, S) float pixels in [0, ``scale``] -> the network's input (mean and std of ``cfg``)."""
    mean = torch.tensor(cfg.mean, device=x.device).view(1, 3, 1, 1) * scale
    std = torch.tensor(cfg.std, device=x.device).view(1, 3, 1, 1) * scale
    return (x - mean) / std


def to_masks(logits: torch.Tensor, rule: str) -> torch.Tensor:
    """The network's (B, 1, S, S) output -> masks in [0, 1], by the config's ``output`` rule."""
    if rule == "sigmoid":
        return torch.sigmoid(logits)
    if rule == "sigmoid-minmax":
        # U2-Net's published post-processing: each mask is stretched to span [0, 1].
        out = torch.sigmoid(logits)
        lo = out.amin(dim=(1, 2, 3), keepdim=True)
        hi = out.amax(dim=(1, 2, 3), keepdim=True)
        return (out - lo) / (hi - lo).clamp_min(1e-8)
    if rule == "identity":
        return logits.clamp(0, 1)
    raise ValueError(f"unknown output rule {rule!r}")
