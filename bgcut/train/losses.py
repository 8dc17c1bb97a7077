"""Losses: binary cross-entropy for per-pixel accuracy plus soft IoU for the mask as a whole.

BCE alone under-weights small objects (most pixels are easy background); the IoU term is
normalised by the object's size, so a missed small object costs as much as a large one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_iou_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    p = torch.sigmoid(logits)
    inter = (p * target).sum(dim=(1, 2, 3))
    union = (p + target - p * target).sum(dim=(1, 2, 3))
    return (1 - (inter + 1) / (union + 1)).mean()


def bce_iou_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, target) + soft_iou_loss(logits, target)


def deep_supervision_loss(
    outputs: list[torch.Tensor] | torch.Tensor, target: torch.Tensor, side_weight: float = 0.4
) -> torch.Tensor:
    """Main output at weight 1, each side output at ``side_weight``."""
    if isinstance(outputs, torch.Tensor):
        return bce_iou_loss(outputs, target)
    main, *sides = outputs
    loss = bce_iou_loss(main, target)
    for s in sides:
        loss = loss + side_weight * bce_iou_loss(s, target)
    return loss
