"""Losses: binary cross-entropy for per-pixel accuracy plus soft IoU for the mask as a whole.

BCE alone under-weights small objects (most pixels are easy background); the IoU term is
normalised by the object's size, so a missed small object costs as much as a large one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def boundary_weights(target: torch.Tensor, width: int = 3, gain: float = 4.0) -> torch.Tensor:
    """1 everywhere, ``1 + gain`` within ``width`` pixels of the mask's edge (either side).

    The edge is where cut-outs are judged (hair, fingers, fur) and where most pixels are
    uncertain; plain BCE gives those few pixels the weight of any easy background pixel.
    """
    k = 2 * width + 1
    dilated = F.max_pool2d(target, k, stride=1, padding=width)
    eroded = -F.max_pool2d(-target, k, stride=1, padding=width)
    return 1 + gain * (dilated - eroded)


def soft_iou_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    p = torch.sigmoid(logits)
    inter = (p * target).sum(dim=(1, 2, 3))
    union = (p + target - p * target).sum(dim=(1, 2, 3))
    return (1 - (inter + 1) / (union + 1)).mean()


def bce_iou_loss(logits: torch.Tensor, target: torch.Tensor, boundary_gain: float = 0.0) -> torch.Tensor:
    """BCE (boundary-weighted when ``boundary_gain`` > 0, normalised by the weights) + soft IoU."""
    if boundary_gain > 0:
        w = boundary_weights(target, gain=boundary_gain)
        bce = (F.binary_cross_entropy_with_logits(logits, target, reduction="none") * w).sum() / w.sum()
    else:
        bce = F.binary_cross_entropy_with_logits(logits, target)
    return bce + soft_iou_loss(logits, target)


def distillation_loss(outputs: list[torch.Tensor] | torch.Tensor, soft: torch.Tensor) -> torch.Tensor:
    """BCE of the main output against a teacher's soft mask (values in [0, 1], not thresholded).

    The soft target carries what the ground truth cannot: how sure the teacher is at hair,
    fur and motion-blurred edges.
    """
    main = outputs[0] if isinstance(outputs, (list, tuple)) else outputs
    return F.binary_cross_entropy_with_logits(main, soft)


def deep_supervision_loss(
    outputs: list[torch.Tensor] | torch.Tensor,
    target: torch.Tensor,
    side_weight: float = 0.4,
    boundary_gain: float = 0.0,
) -> torch.Tensor:
    """Main output at weight 1, each side output at ``side_weight``."""
    if isinstance(outputs, torch.Tensor):
        return bce_iou_loss(outputs, target, boundary_gain)
    main, *sides = outputs
    loss = bce_iou_loss(main, target, boundary_gain)
    for s in sides:
        loss = loss + side_weight * bce_iou_loss(s, target, boundary_gain)
    return loss
