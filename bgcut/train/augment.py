"""Training-time augmentation of cached uint8 image/mask pairs.

Per sample, in this order: random resized crop and flip (image and every mask channel move
together); with probability ``paste``, the object cut out by its ground-truth mask, scaled
and moved onto a random background photo; colour jitter; Gaussian blur; JPEG re-encoding.
The last three touch the image only. Every draw comes from the caller's ``torch.Generator``,
so an epoch's batches are the same after a resume.

Why these: the network meets other cameras and compressions than DUTS's (blur, JPEG), and
salient-object sets put most objects mid-frame on their own photo's background, which a
network can learn as a shortcut; pasting the same object on unrelated photos removes it.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..images import cover


@dataclass(frozen=True)
class AugmentOptions:
    blur: float = 0.2  # probability of a Gaussian blur, sigma 0.3-1.5 px at the training size
    jpeg: float = 0.2  # probability of a JPEG round trip at quality 30-90
    paste: float = 0.0  # probability of moving the object onto a random background (needs backgrounds)
    paste_scale: tuple[float, float] = (0.5, 1.0)  # the pasted object's size, relative to the crop


def _uniform(gen: torch.Generator, lo: float, hi: float) -> float:
    return float(torch.empty(1).uniform_(lo, hi, generator=gen))


def _chance(gen: torch.Generator, p: float) -> bool:
    # Drawn even when p is 0, so switching one augmentation on or off leaves the others' draws alone.
    return float(torch.rand(1, generator=gen)) < p


def _crop(
    images: torch.Tensor, masks: torch.Tensor, k: int, size: int, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random resized crop (scale 0.45-1, aspect 3/4-4/3) and flip: float (1, 3, S, S), (1, C, S, S)."""
    _, _, h, w = images.shape
    scale, ratio = _uniform(gen, 0.45, 1.0), float(np.exp(_uniform(gen, -0.29, 0.29)))
    ch = min(h, int(round(h * (scale / ratio) ** 0.5)))
    cw = min(w, int(round(w * (scale * ratio) ** 0.5)))
    y0 = int(torch.randint(0, h - ch + 1, (1,), generator=gen))
    x0 = int(torch.randint(0, w - cw + 1, (1,), generator=gen))
    img = images[k : k + 1, :, y0 : y0 + ch, x0 : x0 + cw].float() / 255.0
    msk = masks[k : k + 1, :, y0 : y0 + ch, x0 : x0 + cw].float() / 255.0
    img = F.interpolate(img, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    msk = F.interpolate(msk, size=(size, size), mode="bilinear", align_corners=False)
    if _chance(gen, 0.5):
        img, msk = img.flip(-1), msk.flip(-1)
    return img, msk


def paste_on(
    img: torch.Tensor, msk: torch.Tensor, background: np.ndarray, scale: float, where: tuple[float, float]
) -> tuple[torch.Tensor, torch.Tensor]:
    """The object (``img`` under ``msk[:, :1]``) scaled by ``scale`` and placed at relative
    position ``where`` on ``background`` (H x W x 3 uint8, already the crop's size).

    Returns the new picture and its masks: the ground truth moves with the object, and any
    other channel (a teacher's mask of the original photo) is replaced by the ground truth,
    since no teacher has seen this picture.
    """
    size = img.shape[-1]
    side = max(1, int(round(size * scale)))
    obj = F.interpolate(img, size=(side, side), mode="bilinear", align_corners=False, antialias=True)
    alpha = F.interpolate(msk[:, :1], size=(side, side), mode="bilinear", align_corners=False)
    x, y = int(where[0] * (size - side)), int(where[1] * (size - side))
    placed = torch.zeros_like(msk[:, :1])
    placed[..., y : y + side, x : x + side] = alpha
    canvas = torch.from_numpy(background).permute(2, 0, 1)[None].float() / 255.0
    front = canvas.clone()
    front[..., y : y + side, x : x + side] = obj
    out = placed * front + (1 - placed) * canvas
    return out, placed.expand_as(msk).clone()


def _jitter(img: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Brightness, contrast and saturation, each scaled by 1 +- 0.3."""
    b, c, s = (1 + torch.empty(3).uniform_(-0.3, 0.3, generator=gen)).tolist()
    img = img * b
    mean = img.mean()
    img = (img - mean) * c + mean
    gray = img.mean(dim=1, keepdim=True)
    return ((img - gray) * s + gray).clamp_(0, 1)


def degrade(img: torch.Tensor, sigma: float | None, quality: int | None) -> torch.Tensor:
    """Gaussian blur of ``sigma`` px and/or a JPEG round trip at ``quality`` (None skips either)."""
    if sigma is None and quality is None:
        return img
    rgb = (img[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    if sigma is not None:
        rgb = cv2.GaussianBlur(rgb, (0, 0), sigma)
    if quality is not None:
        ok, buf = cv2.imencode(".jpg", rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
        assert ok, "OpenCV could not encode a JPEG"  # an in-memory uint8 array: cannot fail
        rgb = cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1]
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float() / 255.0


def augment(
    images: torch.Tensor,
    masks: torch.Tensor,
    out_size: int,
    gen: torch.Generator,
    opts: AugmentOptions | None = None,
    backgrounds: list[np.ndarray] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Augment a uint8 batch ((N, 3, H, W), (N, C, H, W)); returns float images and masks in [0, 1] at ``out_size``."""
    opts = opts or AugmentOptions()
    out_i, out_m = [], []
    for k in range(images.shape[0]):
        img, msk = _crop(images, masks, k, out_size, gen)
        # Each stage draws its numbers whether or not it fires (see _chance).
        paste = _chance(gen, opts.paste) and bool(backgrounds)
        pick = int(torch.randint(0, max(1, len(backgrounds or ())), (1,), generator=gen))
        scale = _uniform(gen, *opts.paste_scale)
        where = (_uniform(gen, 0, 1), _uniform(gen, 0, 1))
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=gen))
        if paste:
            rng = np.random.default_rng(seed)
            bg = cover(backgrounds[pick], out_size, out_size, at=tuple(rng.random(2)))
            if rng.random() < 0.5:
                bg = np.ascontiguousarray(bg[:, ::-1])
            img, msk = paste_on(img, msk, bg, scale, where)
        img = _jitter(img, gen)
        blur, sigma = _chance(gen, opts.blur), _uniform(gen, 0.3, 1.5)
        jpeg, quality = _chance(gen, opts.jpeg), int(torch.randint(30, 91, (1,), generator=gen))
        img = degrade(img, sigma if blur else None, quality if jpeg else None)
        out_i.append(img)
        out_m.append(msk)
    return torch.cat(out_i), torch.cat(out_m)
