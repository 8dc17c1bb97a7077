"""Compose one picture: pasting cut-outs onto a background, and tracking what stays visible.

Every object has a hard mask (its alpha at >= 50% after scaling, rotation and flip). An
``owner`` map says, for every pixel, which object was pasted there last (0 = background);
an object's annotation is exactly ``owner == its id``. Blending only changes how pixels look
at the edge (a feathered or motion-blurred edge, Poisson colour matching), never the masks.

Randomness comes from a ``numpy.random.Generator`` the caller seeds per picture; every
object's draws are made before its file is read, so a cut-out that fails to load leaves the
rest of the picture (and every other picture) as it would have been.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from ..images import cover
from .options import PasteOptions


@dataclass
class Placed:
    """One pasted object: its class, where it came from, and its visible pixels."""

    index: int  # which cut-out (position in the cut-out list)
    category: str
    blend: str
    full_area: int  # pixels of its mask when pasted
    mask: np.ndarray = field(repr=False)  # bool H x W: visible pixels


@dataclass
class Composition:
    image: np.ndarray  # RGB uint8
    objects: list[Placed]
    errors: list[str]  # cut-outs that could not be read, one line each


@dataclass(frozen=True)
class _Draws:
    """An object's random choices, all made up front (see the module docstring)."""

    cutout: int
    scale: float
    angle: float
    flip: bool
    brightness: float
    contrast: float
    saturation: float
    hue: float
    blend: str
    feather: float
    motion_length: int
    motion_angle: float
    places: np.ndarray  # (tries, 2) uniform [0, 1) positions


def pick(rng: np.random.Generator, lo: int, hi: int) -> int:
    """A uniform integer in [lo, hi] that always consumes exactly one draw.

    ``Generator.integers`` draws nothing when the range holds a single value, which would make
    every later draw depend on options such as the number of blend modes; with this, changing
    ``--blend`` or ``--jitter`` changes how objects look, never where they go.
    """
    return lo + min(int(rng.random() * (hi - lo + 1)), hi - lo)


def _draw(rng: np.random.Generator, n_cutouts: int, opt: PasteOptions) -> _Draws:
    j = opt.jitter
    return _Draws(
        cutout=pick(rng, 0, n_cutouts - 1),
        scale=float(rng.uniform(*opt.scale)),
        angle=float(rng.uniform(-opt.rotation, opt.rotation)),
        flip=bool(opt.flip and rng.random() < 0.5),
        brightness=float(rng.uniform(1 - j, 1 + j)),
        contrast=float(rng.uniform(1 - j, 1 + j)),
        saturation=float(rng.uniform(1 - j, 1 + j)),
        hue=float(rng.uniform(-j / 4, j / 4)),
        blend=opt.blends[pick(rng, 0, len(opt.blends) - 1)],
        feather=opt.feather,
        motion_length=pick(rng, *opt.motion),
        motion_angle=float(rng.uniform(0, 180)),
        places=rng.random((opt.placement_tries, 2)),
    )


def fit_background(image: np.ndarray, size: tuple[int, int] | None, rng: np.random.Generator) -> np.ndarray:
    """Scale to cover ``size`` (width, height) and take a random crop of it; None keeps the image."""
    # The crop offsets are drawn even when unused, so every picture consumes the same draws.
    u, v = rng.random(2)
    if size is None:
        return image.copy()
    return cover(image, size[0], size[1], at=(u, v))


def _premultiplied(rgba: np.ndarray) -> np.ndarray:
    out = rgba.astype(np.float32)
    out[:, :, :3] *= out[:, :, 3:4] / 255.0
    return out


def _unpremultiplied(prem: np.ndarray) -> np.ndarray:
    """Back to RGBA uint8. Resampling premultiplied keeps transparent pixels' colour out of the edges."""
    a = prem[:, :, 3:4]
    rgb = np.where(a > 0, prem[:, :, :3] * 255.0 / np.maximum(a, 1e-6), 0.0)
    out = np.concatenate([rgb, a], axis=2)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def transform(rgba: np.ndarray, d: _Draws, canvas: tuple[int, int]) -> np.ndarray:
    """Scale (longer side = scale x canvas's shorter side), flip and rotate a cut-out; RGBA, tight."""
    cw, ch = canvas
    h, w = rgba.shape[:2]
    s = d.scale * min(cw, ch) / max(h, w)
    prem = _premultiplied(rgba)
    nw, nh = max(1, round(w * s)), max(1, round(h * s))
    prem = cv2.resize(prem, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    if d.flip:
        prem = prem[:, ::-1]
    if d.angle:
        rot = cv2.getRotationMatrix2D((nw / 2, nh / 2), d.angle, 1.0)
        c, si = abs(math.cos(math.radians(d.angle))), abs(math.sin(math.radians(d.angle)))
        bw, bh = math.ceil(nw * c + nh * si), math.ceil(nw * si + nh * c)
        rot[0, 2] += bw / 2 - nw / 2
        rot[1, 2] += bh / 2 - nh / 2
        prem = cv2.warpAffine(
            np.ascontiguousarray(prem), rot, (bw, bh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
        )
    out = _unpremultiplied(prem)
    ys, xs = np.nonzero(out[:, :, 3] >= 128)
    if ys.size == 0:
        return out[:0, :0]
    out = out[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    oh, ow = out.shape[:2]
    if ow > cw or oh > ch:  # rotation made it larger than the picture: shrink to fit
        f = min(cw / ow, ch / oh)
        out = _unpremultiplied(
            cv2.resize(_premultiplied(out), (max(1, int(ow * f)), max(1, int(oh * f))), interpolation=cv2.INTER_AREA)
        )
    return np.ascontiguousarray(out)


def jitter_colour(rgb: np.ndarray, mask: np.ndarray, d: _Draws) -> np.ndarray:
    """Brightness, contrast (around the object's mean grey), saturation and hue, on the object only."""
    if (d.brightness, d.contrast, d.saturation, d.hue) == (1.0, 1.0, 1.0, 0.0):
        return rgb
    x = rgb.astype(np.float32) * d.brightness
    grey = x @ np.array([0.299, 0.587, 0.114], np.float32)
    mean = float(grey[mask].mean()) if mask.any() else 0.0
    x = (x - mean) * d.contrast + mean
    grey = (x @ np.array([0.299, 0.587, 0.114], np.float32))[:, :, None]
    x = (x - grey) * d.saturation + grey
    x = np.clip(x, 0, 255).astype(np.uint8)
    if d.hue:
        hsv = cv2.cvtColor(x, cv2.COLOR_RGB2HSV_FULL)
        hsv[:, :, 0] = (hsv[:, :, 0].astype(np.int16) + round(d.hue * 256)) % 256
        x = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB_FULL)
    return x


def _occlusion_ok(covered: np.ndarray, visible: dict[int, int], full: dict[int, int], max_occlusion: float) -> bool:
    """Would hiding ``covered[oid]`` more pixels of each earlier object keep it at most ``max_occlusion`` hidden?"""
    for oid, n in enumerate(covered[1:], start=1):
        if n and 1 - (visible[oid] - n) / full[oid] > max_occlusion + 1e-9:
            return False
    return True


def _filter_blend(canvas: np.ndarray, rgb: np.ndarray, mask: np.ndarray, kernel: np.ndarray) -> None:
    """Composite with a blurred alpha; colour is blurred only from the object's own pixels.

    Normalised convolution (blur(rgb * m) / blur(m)) extends the object's colours outwards,
    so the soft edge never picks up whatever lay under the cut-out's transparent pixels.
    """
    m = mask.astype(np.float32)
    a = cv2.filter2D(m, -1, kernel, borderType=cv2.BORDER_CONSTANT)
    num = cv2.filter2D(rgb.astype(np.float32) * m[:, :, None], -1, kernel, borderType=cv2.BORDER_CONSTANT)
    col = num / np.maximum(a, 1e-6)[:, :, None]
    a = np.clip(a, 0, 1)[:, :, None]
    canvas[:] = np.clip(np.rint(canvas * (1 - a) + col * a), 0, 255).astype(np.uint8)


def _gaussian_kernel(sigma: float) -> np.ndarray:
    k = cv2.getGaussianKernel(2 * math.ceil(3 * sigma) + 1, sigma)
    return (k @ k.T).astype(np.float32)


def _motion_kernel(length: int, angle: float) -> np.ndarray:
    k = np.zeros((length, length), np.float32)
    c = (length - 1) / 2
    dx, dy = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    for t in np.linspace(-c, c, 2 * length):
        k[round(c + t * dy), round(c + t * dx)] = 1.0
    return k / k.sum()


def _paste(canvas: np.ndarray, obj: np.ndarray, mask: np.ndarray, x: int, y: int, d: _Draws) -> str:
    """Paste ``obj`` (RGB) under ``mask`` at (x, y); returns the blend actually used."""
    h, w = mask.shape
    blend = d.blend
    if blend == "poisson":
        full_mask = np.zeros(canvas.shape[:2], np.uint8)
        full_mask[y : y + h, x : x + w][mask] = 255
        src = canvas.copy()
        src[y : y + h, x : x + w][mask] = obj[mask]
        ys, xs = np.nonzero(mask)  # the mask's box, found in the object's own (small) array
        x0, y0, bw, bh = x + xs.min(), y + ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1
        try:
            # seamlessClone puts the centre of the mask's bounding box at ``centre``; integer halves
            # as OpenCV computes them keep the object exactly where its mask is.
            centre = (int(x0 + bw // 2), int(y0 + bh // 2))
            canvas[:] = cv2.seamlessClone(src, canvas, full_mask, centre, cv2.NORMAL_CLONE)
            return blend
        except cv2.error:
            blend = "none"  # the mask touches the picture's border, where OpenCV cannot solve
    if blend in ("gaussian", "motion"):
        kernel = _gaussian_kernel(d.feather) if blend == "gaussian" else _motion_kernel(d.motion_length, d.motion_angle)
        pad = kernel.shape[0] // 2 + 1
        y0, y1 = max(0, y - pad), min(canvas.shape[0], y + h + pad)
        x0, x1 = max(0, x - pad), min(canvas.shape[1], x + w + pad)
        region_mask = np.zeros((y1 - y0, x1 - x0), bool)
        region_mask[y - y0 : y - y0 + h, x - x0 : x - x0 + w] = mask
        region_rgb = np.zeros((y1 - y0, x1 - x0, 3), np.uint8)
        region_rgb[y - y0 : y - y0 + h, x - x0 : x - x0 + w] = obj
        _filter_blend(canvas[y0:y1, x0:x1], region_rgb, region_mask, kernel)
        return blend
    canvas[y : y + h, x : x + w][mask] = obj[mask]
    return "none"


def compose(
    background: np.ndarray,
    n_cutouts: int,
    load: Callable[[int], np.ndarray],
    categories: Sequence[str],
    opt: PasteOptions,
    rng: np.random.Generator,
) -> Composition:
    """Paste between ``opt.per_image`` objects onto ``background``.

    ``load(i)`` returns cut-out ``i`` as RGBA uint8 (or raises with a one-line message);
    ``categories[i]`` is its class. ``background`` must already have the picture's size.
    """
    canvas = background.copy()
    ch, cw = canvas.shape[:2]
    owner = np.zeros((ch, cw), np.int32)  # object id (1-based, in paste order) or 0
    placed: list[tuple[str, int]] = []  # (blend used, cut-out index) per object id
    visible: dict[int, int] = {}
    full: dict[int, int] = {}
    errors: list[str] = []
    n = pick(rng, *opt.per_image)
    draws = [_draw(rng, n_cutouts, opt) for _ in range(n)]
    for d in draws:
        try:
            rgba = load(d.cutout)
        except Exception as e:  # a bad cut-out is reported and skipped, never fatal
            errors.append(str(e))
            continue
        obj = transform(rgba, d, (cw, ch))
        mask = obj[:, :, 3] >= 128
        area = int(mask.sum())
        if area < opt.min_area:
            continue
        h, w = mask.shape
        for u, v in d.places:
            x, y = int(u * (cw - w + 1)), int(v * (ch - h + 1))
            # pixels of each earlier object this placement would cover; only the object's box is read
            covered = np.bincount(owner[y : y + h, x : x + w][mask], minlength=len(full) + 1)
            if _occlusion_ok(covered, visible, full, opt.max_occlusion):
                break
        else:
            continue  # nowhere to put it without hiding too much of the others
        rgb = jitter_colour(np.ascontiguousarray(obj[:, :, :3]), mask, d)
        blend = _paste(canvas, rgb, mask, x, y, d)
        for oid in range(1, len(full) + 1):
            visible[oid] -= int(covered[oid])
        oid = len(full) + 1
        owner[y : y + h, x : x + w][mask] = oid
        full[oid] = visible[oid] = area
        placed.append((blend, d.cutout))
    objects = [
        Placed(idx, categories[idx], blend, full[oid], owner == oid)
        for oid, (blend, idx) in enumerate(placed, start=1)
        if visible[oid] > 0
    ]
    return Composition(canvas, objects, errors)
