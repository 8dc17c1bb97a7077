"""Edges at full resolution: the mask refined against the photo, and clean foreground colours.

The network sees the photo at its input size (256 px for bgcut-lite, 1024 px for IS-Net), so
the mask that comes back and is stretched to the photo's size has soft, blocky edges that
ignore the real edge in the picture. Two pure functions fix what a close look shows:

- ``guided_filter``: the fast guided filter (He, Sun and Tang, 2010/2015) with the colour photo
  as the guide. Where the photo has an edge inside the mask's soft ramp, the alpha follows it;
  where the mask is flat (surely in or out), it is left as it is. Its coefficients are computed
  on a copy shrunk to about the mask's own resolution, which is where its information is, so
  the cost at full size is a few multiply-adds per pixel.
- ``estimate_foreground``: where alpha is between 0 and 1 (hair, fur, motion blur), a pixel's
  colour is a mix of the object and the old background; pasted on a new background that shows
  as a halo. This estimates the object's own colour F with the two-pass "blur fusion" of Forte
  and Pitié (2021, "Approximate fast foreground colour estimation"): two box-filter passes,
  wide then narrow, each correcting the local foreground and background means so that
  ``alpha * F + (1 - alpha) * B`` reproduces the photo.

No I/O and no model here; ``postprocess.render`` calls them when the options ask.
"""

from __future__ import annotations

import cv2
import numpy as np

# Blur fusion's two radii: a wide pass finds the colours to expect, a narrow one keeps them local.
# (15, 3) beat the published (90, 6) on both evaluation sets' composites (bench/RESULTS.md).
FOREGROUND_RADII = (15, 3)


def _box(x: np.ndarray, r: int) -> np.ndarray:
    """Mean over a (2r+1)^2 window, edges replicated (float32 in, float32 out)."""
    return cv2.blur(x, (2 * r + 1, 2 * r + 1), borderType=cv2.BORDER_REPLICATE)


def guided_filter(photo: np.ndarray, mask: np.ndarray, radius: int, eps: float, factor: int = 1) -> np.ndarray:
    """Refine ``mask`` (H x W uint8) along the edges of ``photo`` (H x W x 3 uint8).

    ``radius`` is in pixels of the photo, ``eps`` the regularisation (on [0, 1] values: larger
    keeps more of the mask, smaller follows the photo more closely). The coefficients are
    computed on ``factor`` x ``factor`` block averages and upsampled (the fast variant).
    Channels are kept as separate planes: numpy reductions over a last axis of 3 were half the
    time of the whole filter.
    """
    h, w = mask.shape
    shrink = factor > 1
    if shrink:
        # Whole blocks: the edge is replicated up to a multiple of the factor.
        ph, pw = -h % factor, -w % factor
        guide = cv2.copyMakeBorder(photo, 0, ph, 0, pw, cv2.BORDER_REPLICATE)
        p_full = cv2.copyMakeBorder(mask, 0, ph, 0, pw, cv2.BORDER_REPLICATE)
        small = ((w + pw) // factor, (h + ph) // factor)
        guide = cv2.resize(guide, small, interpolation=cv2.INTER_AREA)
        p_small = cv2.resize(p_full, small, interpolation=cv2.INTER_AREA)
    else:
        guide, p_small = photo, mask
    g = [c.astype(np.float32) * (1 / 255) for c in cv2.split(guide)]
    p = p_small.astype(np.float32) * (1 / 255)
    r = max(1, round(radius / factor))
    m = [_box(c, r) for c in g]
    mean_p = _box(p, r)
    cx, cy, cz = (_box(c * p, r) - mc * mean_p for c, mc in zip(g, m, strict=True))

    # The guide's 3 x 3 covariance per pixel (symmetric: 6 entries), eps on the diagonal.
    def var(i: int, j: int) -> np.ndarray:
        return _box(g[i] * g[j], r) - m[i] * m[j]

    xx, yy, zz = var(0, 0) + eps, var(1, 1) + eps, var(2, 2) + eps
    xy, xz, yz = var(0, 1), var(0, 2), var(1, 2)
    # a = inverse(covariance) @ cov_ip, by cofactors: one 3 x 3 solve per pixel, vectorised.
    i00, i01, i02 = yy * zz - yz * yz, xz * yz - xy * zz, xy * yz - xz * yy
    i11, i12, i22 = xx * zz - xz * xz, xz * xy - xx * yz, xx * yy - xy * xy
    inv_det = 1 / (xx * i00 + xy * i01 + xz * i02)
    a = [
        (i00 * cx + i01 * cy + i02 * cz) * inv_det,
        (i01 * cx + i11 * cy + i12 * cz) * inv_det,
        (i02 * cx + i12 * cy + i22 * cz) * inv_det,
    ]
    b = mean_p - a[0] * m[0] - a[1] * m[1] - a[2] * m[2]
    # Averaged over the windows, then at full size: q = sum(a_c * photo_c) + b (photo in [0, 255]).
    mean_a = [_box(c, r) * (1 / 255) for c in a]
    mean_b = _box(b, r)
    if shrink:
        full = (small[0] * factor, small[1] * factor)
        mean_a = [cv2.resize(c, full, interpolation=cv2.INTER_LINEAR)[:h, :w] for c in mean_a]
        mean_b = cv2.resize(mean_b, full, interpolation=cv2.INTER_LINEAR)[:h, :w]
    q = mean_b.copy()
    for c, plane in zip(mean_a, cv2.split(photo), strict=True):
        q += c * plane
    return np.clip(q * 255 + 0.5, 0, 255).astype(np.uint8)


STRIP_ROWS = 256


def _fused(photo: np.ndarray, alpha: np.ndarray, radii: tuple[int, ...]) -> np.ndarray:
    """Blur fusion on a block of rows: the foreground colour, H x W x 3 float32 in [0, 1]."""
    image = photo.astype(np.float32) * (1 / 255)
    a1 = alpha.astype(np.float32) * (1 / 255)
    a = cv2.merge([a1, a1, a1])
    na = 1 - a
    fa, b_na = image * a, image * na  # F alpha and B (1 - alpha), with F = B = the photo to start
    fg = image
    for r in radii:
        blurred = _box(a, r)
        mean_f = _box(fa, r) / (blurred + 1e-5)  # the local foreground colour
        mean_b = _box(b_na, r) / (1 - blurred + 1e-5)  # the local background colour
        # Blur fusion: the local means, corrected so that alpha F + (1 - alpha) B gives the photo.
        fg = np.clip(mean_f + a * (image - a * mean_f - na * mean_b), 0, 1)
        fa, b_na = fg * a, mean_b * na
    return fg


def estimate_foreground(
    photo: np.ndarray, alpha: np.ndarray, radii: tuple[int, ...] = FOREGROUND_RADII, near: int | None = None
) -> np.ndarray:
    """The object's own colour where ``alpha`` (H x W uint8) is partial; elsewhere ``photo`` as it is.

    ``near``: only partial pixels within that many px of the object's outline (alpha 0.5) are
    recoloured, fully up to half that distance and fading out beyond, so no seam shows. That is
    where halos are; a partial alpha far inside or outside the outline is the model being unsure
    of a whole region (a shirt, a reflection), whose colours must stay.

    Returns H x W x 3 uint8. Only the box around the partial pixels (widened by the passes'
    reach) is filtered, in strips of rows. Dense arithmetic on whole rows: a network's soft mask is partial on
    most pixels (80% of a davis16 frame for bgcut-lite), where picking pixels out costs more.
    """
    partial = (alpha > 0) & (alpha < 255)
    distance = None
    if near is not None:
        inside = (alpha >= 128).astype(np.uint8)
        outline = cv2.morphologyEx(inside, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8))
        distance = cv2.distanceTransform(1 - outline, cv2.DIST_L2, 3)
        partial &= distance < near
    rows, cols = np.flatnonzero(partial.any(axis=1)), np.flatnonzero(partial.any(axis=0))
    if rows.size == 0:
        return photo
    reach = sum(radii) + 1  # a result needs the first pass up to radii[1] away, which needs radii[0] more
    h, w = alpha.shape
    y0, y1 = max(0, int(rows[0]) - reach), min(h, int(rows[-1]) + 1 + reach)
    x0, x1 = max(0, int(cols[0]) - reach), min(w, int(cols[-1]) + 1 + reach)
    out = photo.copy()
    # In strips of rows, each with `reach` rows of context either side: the float planes of a
    # 7000 x 7000 photo would take about 6 GB at once (a server's memory budget counts on this).
    for s0 in range(y0, y1, STRIP_ROWS):
        s1 = min(y1, s0 + STRIP_ROWS)
        c0, c1 = max(y0, s0 - reach), min(y1, s1 + reach)
        fg = _fused(photo[c0:c1, x0:x1], alpha[c0:c1, x0:x1], radii)[s0 - c0 : s1 - c0]
        if distance is not None:  # 1 near the outline, fading to 0 at `near` px
            weight = np.clip((near - distance[s0:s1, x0:x1]) / (near / 2), 0, 1)[:, :, None]
            fg = weight * fg + (1 - weight) * (photo[s0:s1, x0:x1].astype(np.float32) * (1 / 255))
        estimated = np.clip(fg * 255 + 0.5, 0, 255).astype(np.uint8)
        where = partial[s0:s1, x0:x1]
        out[s0:s1, x0:x1][where] = estimated[where]
    return out


# The guided filter's geometry, in pixels of the model's input, so that it scales with how far the
# mask was stretched: the window's radius, and about how many coefficient samples per model pixel
# (the coefficients are computed on blocks of round(stretch / GUIDED_SAMPLES) photo pixels).
GUIDED_RADIUS = 2.0
GUIDED_SAMPLES = 2.0


def _edge_box(mask: np.ndarray, reach: int) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """Rows and columns spanning every pixel within ``reach`` of an edge of the mask (a partial
    value, or a jump between neighbours), or None for a flat mask."""
    flat = cv2.dilate(mask, None) == cv2.erode(mask, None)
    edge = ~flat | ((mask > 0) & (mask < 255))
    rows, cols = np.flatnonzero(edge.any(axis=1)), np.flatnonzero(edge.any(axis=0))
    if rows.size == 0:
        return None
    h, w = mask.shape
    return (
        (max(0, int(rows[0]) - reach), min(h, int(rows[-1]) + 1 + reach)),
        (max(0, int(cols[0]) - reach), min(w, int(cols[-1]) + 1 + reach)),
    )


def _stretch(mask: np.ndarray, model_size: int | None) -> float:
    """Photo pixels per model pixel: how far a ``model_size`` px model's mask was stretched (at
    least 1; ``model_size`` None: the mask is the photo's own size)."""
    return max(1.0, max(mask.shape) / model_size) if model_size else 1.0


def outline_band(mask: np.ndarray, model_size: int | None) -> int:
    """How far from the outline ``--decontaminate`` recolours: the guided filter's reach, in photo px."""
    return max(3, round(2 * GUIDED_RADIUS * _stretch(mask, model_size)))


def decontaminate(photo: np.ndarray, alpha: np.ndarray, model_size: int | None) -> np.ndarray:
    """``--decontaminate``: ``estimate_foreground`` along the outline of a ``model_size`` px model's
    mask. The wide pass must see past the soft band, which widens as the mask is stretched."""
    near = outline_band(alpha, model_size)
    radii = (max(FOREGROUND_RADII[0], 2 * near), *FOREGROUND_RADII[1:])
    return estimate_foreground(photo, alpha, radii, near)


def refine_edges(
    photo: np.ndarray,
    mask: np.ndarray,
    model_size: int | None,
    method: str,
    eps: float,
    radius_px: float = GUIDED_RADIUS,
    samples: float = GUIDED_SAMPLES,
    notes: list[str] | None = None,
) -> np.ndarray:
    """``PostOptions.refine`` applied: the upsampled mask of a ``model_size`` px model, refined
    against the full-size ``photo`` (``model_size`` None: the mask is the photo's own size).
    ``radius_px`` and ``samples`` are the guided filter's geometry in model pixels (see above).
    What the matting solver reported, in one line, is appended to ``notes``."""
    if method == "none":
        return mask
    stretch = _stretch(mask, model_size)
    if method == "guided":
        radius = max(1, round(radius_px * stretch))
        factor = max(1, round(stretch / samples))
        # Only around the mask's edges: elsewhere every window sees a flat mask and keeps it. A
        # pixel's result depends on pixels up to 2 radii (and a block) away, so the box is widened
        # by that, and starts on a block boundary so that its blocks are the whole photo's.
        window = _edge_box(mask, 2 * radius + 2 * factor)
        if window is None:
            return mask
        (y0, y1), (x0, x1) = window
        y0, x0 = y0 - y0 % factor, x0 - x0 % factor
        out = mask.copy()
        out[y0:y1, x0:x1] = guided_filter(photo[y0:y1, x0:x1], mask[y0:y1, x0:x1], radius, eps, factor)
        return out
    if method == "matting":
        from .matting import closed_form_alpha

        refined, note = closed_form_alpha(photo, mask, band=max(2, round(radius_px * stretch)))
        if note is not None and notes is not None:
            notes.append(note)
        return refined
    raise ValueError(f"unknown refinement {method!r}")
