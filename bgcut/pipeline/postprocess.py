"""Post-processing: pure functions on uint8 masks and images (no I/O, no model): the mask is
refined (``PostOptions``), then rendered into what the output format holds (``render``).

Masks are H x W uint8 (255 = foreground). Every decision that needs a hard mask
(components, holes, boxes) uses ``threshold``; the alpha itself stays soft unless
``binary`` is asked for, because soft edges look right on hair and fur.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..config import OutputOptions, PostOptions, parse_margin
from ..images import cover
from .edges import decontaminate, refine_edges
from .matting import matting_cost

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 (x1, y1 exclusive)


def _cut(threshold: float) -> int:
    # threshold is in [0, 1]; a pixel is foreground when alpha/255 >= threshold.
    return int(np.ceil(threshold * 255 - 1e-9))


def hard(mask: np.ndarray, threshold: float) -> np.ndarray:
    return mask >= _cut(threshold)


def _disk(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


# Erode, dilate and feather cost a bounded number of passes over the image, whatever the radius:
# an OpenCV disk of radius r costs about pixels x r^1.5 (erode 500 on a 7000 x 7000 mask ran for
# minutes). A radius up to EXACT_RADIUS runs as it is. A larger one is split, since eroding by a
# then by b is eroding by a + b (disks add): the bulk runs on the mask shrunk k times, where it is
# at most EXACT_RADIUS, and the last REST_RADIUS or so at full size. The shrunk result's edge is
# k pixels wide once scaled back; it is steepened to the width of a plain anti-aliased edge.
EXACT_RADIUS = 24
REST_RADIUS = 12


def _pool(mask: np.ndarray, k: int, reduce: np.ufunc) -> np.ndarray:
    """Shrink by ``k`` with the min or max of each k x k block: a thin part survives a dilation
    (max) and a thin gap survives an erosion (min), as in the exact operation."""
    h, w = mask.shape
    padded = np.pad(mask, ((0, -h % k), (0, -w % k)), mode="edge")
    blocks = padded.reshape(padded.shape[0] // k, k, padded.shape[1] // k, k)
    return reduce.reduce(reduce.reduce(blocks, axis=3), axis=1)


def _grown(small: np.ndarray, shape: tuple[int, int], k: int) -> np.ndarray:
    """Scale back by ``k`` (bilinear, cell-centred as the pooling was) and steepen each k-pixel ramp
    between the values on either side of it, so that a plateau (a soft region, hair) keeps its level."""
    h, w = shape

    def up(a: np.ndarray, how: int) -> np.ndarray:
        return cv2.resize(a, (a.shape[1] * k, a.shape[0] * k), interpolation=how)[:h, :w].astype(np.float32)

    square = np.ones((3, 3), np.uint8)
    lo, hi = up(cv2.erode(small, square), cv2.INTER_LINEAR), up(cv2.dilate(small, square), cv2.INTER_LINEAR)
    v = up(small, cv2.INTER_LINEAR)
    steep = (v - (lo + hi) / 2) * (k / 2) + (lo + hi) / 2
    return np.clip(steep, lo, hi).round().astype(np.uint8)


def morph(mask: np.ndarray, radius: int, dilate: bool) -> np.ndarray:
    """Erode or dilate by a disk of ``radius`` pixels, at a cost that does not grow with it."""
    op = cv2.dilate if dilate else cv2.erode
    bulk = radius - REST_RADIUS
    k = -(-bulk // EXACT_RADIUS)
    if k <= 1:
        return op(mask, _disk(radius))
    # Pooling moves the edge out (dilate) or in (erode) by (k - 1) / 2 pixels on average: counted in.
    small_radius = max(1, int((bulk - (k - 1) / 2) // k))
    moved = op(_pool(mask, k, np.maximum if dilate else np.minimum), _disk(small_radius))
    rest = round(radius - small_radius * k - (k - 1) / 2)
    grown = _grown(moved, mask.shape, k)
    return op(grown, _disk(rest)) if rest > 0 else grown


def feather(mask: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of ``sigma`` pixels; a wide one runs shrunk (what it leaves is smooth)."""
    k = int(sigma // EXACT_RADIUS) + 1
    if k <= 1:
        return cv2.GaussianBlur(mask, (0, 0), sigmaX=sigma)
    h, w = mask.shape
    small = cv2.resize(mask, (max(1, round(w / k)), max(1, round(h / k))), interpolation=cv2.INTER_AREA)
    blurred = cv2.GaussianBlur(small, (0, 0), sigmaX=sigma / k)
    return cv2.resize(blurred, (w, h), interpolation=cv2.INTER_LINEAR)


def keep_largest(mask: np.ndarray, threshold: float) -> np.ndarray:
    """Zero every connected object but the largest, with its soft rim."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(hard(mask, threshold).astype(np.uint8), connectivity=8)
    if n <= 2:
        return mask
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    # Keep the soft pixels near the kept object (its anti-aliased edge), drop the rest.
    near = cv2.dilate((labels == largest).astype(np.uint8), _disk(3)).astype(bool)
    out = mask.copy()
    out[~near] = 0
    return out


def fill_holes(mask: np.ndarray, threshold: float) -> np.ndarray:
    """Set to 255 every background region that does not touch the image border."""
    fg = hard(mask, threshold).astype(np.uint8)
    h, w = fg.shape
    padded = np.zeros((h + 2, w + 2), np.uint8)
    padded[1:-1, 1:-1] = fg
    flood = padded.copy()
    cv2.floodFill(flood, np.zeros((h + 4, w + 4), np.uint8), (0, 0), 1)
    holes = flood[1:-1, 1:-1] == 0
    out = mask.copy()
    out[holes] = 255
    return out


def refine(mask: np.ndarray, opts: PostOptions) -> np.ndarray:
    """Apply the post-processing options in a fixed order: keep, fill, erode, dilate, binary, feather."""
    if opts.keep == "largest":  # PostOptions has checked that keep is "all" or "largest"
        mask = keep_largest(mask, opts.threshold)
    if opts.fill_holes:
        mask = fill_holes(mask, opts.threshold)
    if opts.erode > 0:
        mask = morph(mask, opts.erode, dilate=False)
    if opts.dilate > 0:
        mask = morph(mask, opts.dilate, dilate=True)
    if opts.binary:
        mask = np.where(hard(mask, opts.threshold), 255, 0).astype(np.uint8)
    if opts.feather > 0:
        mask = feather(mask, opts.feather / 2)
    return mask


def apply_input_alpha(mask: np.ndarray, alpha: np.ndarray | None) -> np.ndarray:
    """An input that was already transparent stays transparent where it was."""
    if alpha is None:
        return mask
    return ((mask.astype(np.uint16) * alpha.astype(np.uint16) + 127) // 255).astype(np.uint8)


def cutout(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """RGBA. Fully transparent pixels get RGB 0: they are invisible either way, and a PNG of the
    cut-out is then ~25% smaller and ~20% faster to write (measured on davis16, bench/RESULTS.md).
    Partly transparent pixels keep their colour (straight alpha, nothing premultiplied)."""
    visible = cv2.bitwise_and(rgb, rgb, mask=alpha)  # OpenCV: ~15x faster than numpy masking here
    return cv2.merge([*cv2.split(visible), alpha])


@dataclass(frozen=True)
class Background:
    """What ``--bg`` names, ready to composite onto: a colour, a photo (RGB) already decoded, or
    the input's own background blurred (a Gaussian of this sigma, in pixels)."""

    color: tuple[int, int, int] | None = None
    image: np.ndarray | None = None  # RGB
    blur: float | None = None


WHITE = Background(color=(255, 255, 255))


COMPOSITE_ROWS = 256


def composite(rgb: np.ndarray, alpha: np.ndarray, bg: Background) -> np.ndarray:
    """Alpha-blend the cut-out onto a colour or a photo; returns RGB uint8."""
    h, w = alpha.shape
    back = np.empty_like(rgb)
    if bg.blur is not None:
        back[:] = blurred_background(rgb, alpha, bg.blur)
    elif bg.image is not None:
        back[:] = cover(bg.image, w, h)
    else:
        back[:] = bg.color
    # In strips of rows: float planes of the whole picture would take ~50 bytes a pixel at once.
    for y in range(0, h, COMPOSITE_ROWS):
        rows = slice(y, y + COMPOSITE_ROWS)
        a = alpha[rows].astype(np.float32)[:, :, None] / 255.0
        back[rows] = np.clip(rgb[rows] * a + back[rows] * (1 - a) + 0.5, 0, 255).astype(np.uint8)
    return back


def blurred_background(rgb: np.ndarray, alpha: np.ndarray, sigma: float) -> np.ndarray:
    """The photo's background, blurred without the subject's colours: each pixel is the Gaussian
    mean of the background around it, weighted by how much background each neighbour is
    (1 - alpha; a normalised convolution). A plain blur would smear the subject into a halo
    around itself. Where no background lies within reach (deep inside a large subject, which
    covers it anyway), the plain blur stands in.

    Computed at a scale where the Gaussian is about 4 pixels wide, then enlarged: a blur that
    wide has no detail to lose, and a 12 MP photo costs a few small planes instead of full-size
    float ones."""
    h, w = alpha.shape
    shrink = max(1.0, sigma / 4.0)
    sw, sh = max(1, round(w / shrink)), max(1, round(h / shrink))
    weight = 1.0 - cv2.resize(alpha, (sw, sh), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    small = cv2.resize(rgb, (sw, sh), interpolation=cv2.INTER_AREA).astype(np.float32)
    s = sigma / shrink
    spread = cv2.GaussianBlur(weight, (0, 0), s)[:, :, None]
    mean = cv2.GaussianBlur(small * weight[:, :, None], (0, 0), s) / np.maximum(spread, 1e-6)
    plain = cv2.GaussianBlur(small, (0, 0), s)
    small_back = np.where(spread > 1e-3, mean, plain)
    return cv2.resize(np.clip(small_back + 0.5, 0, 255).astype(np.uint8), (w, h), interpolation=cv2.INTER_LINEAR)


def coverage(mask: np.ndarray, threshold: float) -> tuple[Box | None, float]:
    """The box around the foreground and its share of the picture, from one thresholded copy."""
    solid = hard(mask, threshold).view(np.uint8)
    # OpenCV's box of the non-zero pixels: np.nonzero listed every foreground pixel's index to take
    # four extremes from them, 2 ms of a 0.4 MP frame's 3 ms render.
    x, y, w, h = cv2.boundingRect(solid)
    return (None if w == 0 else (x, y, x + w, y + h)), cv2.countNonZero(solid) / solid.size


def expand_box(box: Box, margin: tuple[float, bool], width: int, height: int) -> Box:
    x0, y0, x1, y1 = box
    value, pct = margin
    mx = value * (x1 - x0) / 100 if pct else value
    my = value * (y1 - y0) / 100 if pct else value
    return (
        max(0, int(np.floor(x0 - mx))),
        max(0, int(np.floor(y0 - my))),
        min(width, int(np.ceil(x1 + mx))),
        min(height, int(np.ceil(y1 + my))),
    )


def object_masks(mask: np.ndarray, threshold: float, min_area: int) -> list[tuple[Box, np.ndarray]]:
    """One (box, mask) per connected object of at least ``min_area`` pixels, largest first.

    Each object's mask keeps its own soft rim and excludes the other objects.
    """
    n, labels, stats, _ = cv2.connectedComponentsWithStats(hard(mask, threshold).astype(np.uint8), connectivity=8)
    order = sorted(
        range(1, n), key=lambda i: (-stats[i, cv2.CC_STAT_AREA], stats[i, cv2.CC_STAT_TOP], stats[i, cv2.CC_STAT_LEFT])
    )
    objects = []
    for i in order:
        if stats[i, cv2.CC_STAT_AREA] < min_area:
            continue
        own = labels == i
        near = cv2.dilate(own.astype(np.uint8), _disk(3)).astype(bool) & ((labels == 0) | own)
        obj = np.where(near, mask, 0).astype(np.uint8)
        x, y, w, h = (int(v) for v in stats[i, :4])
        objects.append(((x, y, x + w, y + h), obj))
    return objects


@dataclass
class Rendered:
    """What one input becomes: images to write (name suffix, array) and facts for the manifest."""

    images: list[tuple[str, np.ndarray]]
    bbox: Box | None
    fg_fraction: float
    warning: str | None = None


def _pixels(kind: str, rgb: np.ndarray, alpha: np.ndarray, bg: Background | None) -> np.ndarray:
    """One output image's pixels, as ``Format.pixels`` names them."""
    if kind == "alpha":
        return alpha
    if kind == "flat":
        return composite(rgb, alpha, bg or WHITE)
    return composite(rgb, alpha, bg) if bg is not None else cutout(rgb, alpha)


def render(
    rgb: np.ndarray,
    input_alpha: np.ndarray | None,
    raw_mask: np.ndarray,
    post: PostOptions,
    out: OutputOptions,
    bg: Background | None = None,
    model_size: int | None = None,
) -> Rendered:
    """Turn an image and its predicted mask into the output image(s) that ``out.format`` describes
    (``config.FORMATS``). ``bg`` is ``out.bg`` made ready (see ``target.load_background``);
    ``model_size`` is the input size of the model that made the mask (the edge refinement's scale)."""
    spec = out.spec
    notes = [cost] if post.refine == "matting" and (cost := matting_cost(*rgb.shape[:2])) else []
    raw_mask = refine_edges(rgb, raw_mask, model_size, post.refine, post.refine_eps, notes=notes)
    warning = "; ".join(notes) or None
    mask = apply_input_alpha(refine(raw_mask, post), input_alpha)
    if post.decontaminate and spec.pixels != "alpha":
        rgb = decontaminate(rgb, mask, model_size)
    h, w = mask.shape
    box, fraction = coverage(mask, post.threshold)
    if not spec.crop:
        return Rendered([("", _pixels(spec.pixels, rgb, mask, bg))], box, fraction, warning)
    margin = parse_margin(out.margin)
    if out.per_object:
        parts = [(f"_obj{n:02d}", b, m) for n, (b, m) in enumerate(object_masks(mask, post.threshold, out.min_area))]
    else:
        parts = [("", box, mask)] if box is not None else []
    images = []
    for suffix, part_box, part_mask in parts:
        x0, y0, x1, y1 = expand_box(part_box, margin, w, h)
        images.append((suffix, _pixels(spec.pixels, rgb[y0:y1, x0:x1], part_mask[y0:y1, x0:x1], bg)))
    return Rendered(images, box, fraction, warning)
