"""Image/mask pairs for training: listing, a deterministic validation split, an in-memory cache.

The cache holds every pair decoded once and resized to a fixed square, as uint8. On a CPU
the decode of a JPEG costs about as much as a training step of the small model, so
decoding once instead of every epoch roughly halves the time of a run.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..errors import UsageError
from ..pipeline.decode import load_image
from ..pipeline.reader import IMAGE_EXTENSIONS

Pair = tuple[Path, Path]


def list_pairs(images: Path, masks: Path) -> list[Pair]:
    """Pairs matched by file stem; images without a mask are left out."""
    mask_by_stem = {p.stem: p for p in sorted(masks.iterdir()) if p.suffix.lower() in IMAGE_EXTENSIONS}
    pairs = [
        (p, mask_by_stem[p.stem])
        for p in sorted(images.iterdir())
        if p.suffix.lower() in IMAGE_EXTENSIONS and p.stem in mask_by_stem
    ]
    if not pairs:
        raise UsageError(f"no image/mask pairs with matching names in {images} and {masks}")
    return pairs


def split_pairs(pairs: list[Pair], val_fraction: float) -> tuple[list[Pair], list[Pair]]:
    """Split by a hash of the file stem, so the split does not move when files are added."""

    def bucket(stem: str) -> float:
        return int(hashlib.sha1(stem.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF

    val = [p for p in pairs if bucket(p[0].stem) < val_fraction]
    train = [p for p in pairs if bucket(p[0].stem) >= val_fraction]
    return train, val


def _read_mask(path: Path, size: int) -> np.ndarray:
    mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if mask is None:
        raise ValueError(f"{path}: cannot read mask")
    return cv2.resize(mask, (size, size), interpolation=cv2.INTER_LINEAR)


class _PairDecoder(Dataset):
    def __init__(self, pairs: list[Pair], size: int, soft: list[Path] | None = None) -> None:
        self.pairs, self.size, self.soft = pairs, size, soft

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        img_path, mask_path = self.pairs[i]
        rgb = cv2.resize(load_image(img_path).rgb, (self.size, self.size), interpolation=cv2.INTER_AREA)
        masks = [_read_mask(mask_path, self.size)]
        if self.soft is not None:
            masks.append(_read_mask(self.soft[i], self.size))
        return rgb, np.stack(masks)


def cache_pairs(
    pairs: list[Pair], size: int, workers: int, soft: list[Path] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode every pair once: returns uint8 tensors (N, 3, S, S) and (N, C, S, S).

    C is 1 (the ground truth), or 2 with ``soft``: a teacher's soft mask per pair as channel 1,
    so every augmentation moves it exactly with the ground truth.
    """
    images = torch.empty((len(pairs), 3, size, size), dtype=torch.uint8)
    masks = torch.empty((len(pairs), 1 if soft is None else 2, size, size), dtype=torch.uint8)
    loader = DataLoader(_PairDecoder(pairs, size, soft), batch_size=None, num_workers=workers)
    for i, (rgb, mask) in enumerate(loader):
        images[i] = torch.as_tensor(rgb).permute(2, 0, 1)
        masks[i] = torch.as_tensor(mask)
    return images, masks


def augment(
    images: torch.Tensor, masks: torch.Tensor, out_size: int, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random resized crop, horizontal flip and colour jitter on a uint8 batch.

    Returns float images in [0, 1] and float masks in [0, 1], both at ``out_size``.
    """
    import torch.nn.functional as F

    n, _, h, w = images.shape
    out_i, out_m = [], []
    for k in range(n):
        scale = float(torch.empty(1).uniform_(0.45, 1.0, generator=gen))
        ratio = float(torch.exp(torch.empty(1).uniform_(-0.29, 0.29, generator=gen)))
        ch = min(h, int(round(h * (scale / ratio) ** 0.5)))
        cw = min(w, int(round(w * (scale * ratio) ** 0.5)))
        y0 = int(torch.randint(0, h - ch + 1, (1,), generator=gen))
        x0 = int(torch.randint(0, w - cw + 1, (1,), generator=gen))
        img = images[k : k + 1, :, y0 : y0 + ch, x0 : x0 + cw].float() / 255.0
        msk = masks[k : k + 1, :, y0 : y0 + ch, x0 : x0 + cw].float() / 255.0
        img = F.interpolate(img, size=(out_size, out_size), mode="bilinear", align_corners=False, antialias=True)
        msk = F.interpolate(msk, size=(out_size, out_size), mode="bilinear", align_corners=False)
        if torch.rand(1, generator=gen) < 0.5:
            img, msk = img.flip(-1), msk.flip(-1)
        b, c, s = (1 + torch.empty(3).uniform_(-0.3, 0.3, generator=gen)).tolist()
        img = img * b
        mean = img.mean()
        img = (img - mean) * c + mean
        gray = img.mean(dim=1, keepdim=True)
        img = (img - gray) * s + gray
        out_i.append(img.clamp_(0, 1))
        out_m.append(msk)
    return torch.cat(out_i), torch.cat(out_m)
