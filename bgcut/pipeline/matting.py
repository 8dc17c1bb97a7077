"""``--refine matting``: closed-form alpha matting (Levin, Lischinski and Weiss, 2008) in a band
around the mask's edge, for hair and fur, through pymatting (``pip install 'bgcut[matting]'``).

The mask gives a trimap: pixels the mask is sure of, shrunk by ``band`` px, stay as they are;
the band between them is solved so that alpha follows the photo's local colour lines. It is a
sparse linear solve over the band: seconds per megapixel, which is why it is behind a flag and
a large photo gets a warning (``matting_cost``).
"""

from __future__ import annotations

import contextlib
import io
import threading
import time
from collections.abc import Callable

import cv2
import numpy as np

from ..errors import UsageError

INSTALL_HINT = "--refine matting needs pymatting: pip install 'bgcut[matting]'"
SURE = 0.95  # mask values at least this (or at most 1 - this) are taken as sure, before shrinking
WARN_MEGAPIXELS = 2.0


SLOW_IMPORT_S = 3.0  # an import slower than this is said: numba compiling pymatting's kernels


def require_pymatting() -> str | None:
    """A usage error before any work when the extra is missing; else a note when the import was slow.

    pymatting's kernels are compiled by numba when it is first imported on a machine (45 s was
    seen), then cached: without a word, that time looks like a hang before the run starts.
    """
    start = time.perf_counter()
    try:
        import pymatting  # noqa: F401
    except ImportError:
        raise UsageError(INSTALL_HINT) from None
    took = time.perf_counter() - start
    if took < SLOW_IMPORT_S:
        return None
    return f"--refine matting: pymatting took {took:.0f}s to load (numba compiles its kernels once per machine)"


def trimap(mask: np.ndarray, band: int) -> np.ndarray:
    """1 where the mask is surely foreground, 0 surely background, 0.5 in the band to solve."""
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * band + 1, 2 * band + 1))
    fg = cv2.erode((mask >= round(255 * SURE)).astype(np.uint8), disk).astype(bool)
    bg = cv2.erode((mask <= round(255 * (1 - SURE))).astype(np.uint8), disk).astype(bool)
    out = np.full(mask.shape, 0.5)
    out[fg], out[bg] = 1.0, 0.0
    return out


TILE = 512  # pixels solved together: one system for a whole 12 MP photo grows to about 6.5 GB
MARGIN = 64  # context solved around each tile and then dropped, so that tiles meet without seams
# The most edge-band pixels solved in one photo. A band this wide means the model was unsure over a
# large area (bgcut-lite on a 12 MP portrait: 5 M pixels), where matting cannot help and the tiles'
# solutions would no longer agree where they meet.
MAX_BAND_PIXELS = 1_500_000
_SOLVE_LOCK = threading.Lock()  # pymatting prints to stdout, which is redirected while it solves


def closed_form_alpha(photo: np.ndarray, mask: np.ndarray, band: int) -> tuple[np.ndarray, str | None]:
    """The mask (H x W uint8) with its edge band re-solved by closed-form matting against ``photo``,
    and a one-line note (what pymatting reported, or why the band was left as it is; else None).

    The band is solved in tiles of ``TILE`` px, each with ``MARGIN`` px of context, so memory stays
    bounded whatever the photo's size; tiles with nothing to solve are skipped, and a band of more
    than ``MAX_BAND_PIXELS`` is not solved at all.
    """
    try:
        from pymatting import estimate_alpha_cf
    except ImportError:
        raise UsageError(INSTALL_HINT) from None
    tri = trimap(mask, band)
    unknown = tri == 0.5
    count = int(unknown.sum())
    if count > MAX_BAND_PIXELS:
        return mask, (
            f"--refine matting left out: the mask's uncertain band holds {count:,} pixels, over the "
            f"limit of {MAX_BAND_PIXELS:,}; the model's mask is kept"
        )
    out = mask.copy()
    notes: list[str] = []
    h, w = mask.shape
    for y0 in range(0, h, TILE):
        for x0 in range(0, w, TILE):
            core = (slice(y0, min(h, y0 + TILE)), slice(x0, min(w, x0 + TILE)))
            if not unknown[core].any():
                continue
            ys = slice(max(0, y0 - MARGIN), min(h, y0 + TILE + MARGIN))
            xs = slice(max(0, x0 - MARGIN), min(w, x0 + TILE + MARGIN))
            part = tri[ys, xs]
            # No sure foreground or background to solve from (a mask the model was unsure of
            # everywhere here): this part of the mask stays as it is.
            if not (part == 1).any() or not (part == 0).any():
                continue
            alpha = _solve(estimate_alpha_cf, photo[ys, xs], part, notes)
            inner = (slice(core[0].start - ys.start, core[0].stop - ys.start),
                     slice(core[1].start - xs.start, core[1].stop - xs.start))  # fmt: skip
            todo = unknown[core]
            out[core][todo] = np.clip(alpha[inner][todo] * 255 + 0.5, 0, 255).astype(np.uint8)
    return out, _note(notes)


def _solve(estimate: Callable[..., np.ndarray], photo: np.ndarray, tri: np.ndarray, notes: list[str]) -> np.ndarray:
    printed = io.StringIO()
    with _SOLVE_LOCK, contextlib.redirect_stdout(printed):
        alpha = estimate(photo.astype(np.float64) / 255.0, tri)
    if printed.getvalue().strip():
        notes.append(printed.getvalue())
    return alpha


def _note(notes: list[str]) -> str | None:
    """pymatting's multi-line prints, folded into one line."""
    if not notes:
        return None
    if any("PERFORMANCE WARNING" in n for n in notes):
        return (
            f"--refine matting: the solver's preconditioner needed a larger shift in {len(notes)} tile(s) "
            "(pymatting's performance warning): slower, same result"
        )
    first = " ".join(notes[0].split())
    return f"--refine matting: pymatting said: {first[:200]}"


def matting_cost(height: int, width: int) -> str | None:
    """The one-line warning for a photo large enough that matting takes a while, or None."""
    mp = height * width / 1e6
    if mp < WARN_MEGAPIXELS:
        return None
    return f"--refine matting on a {mp:.1f} MP image: closed-form matting takes seconds to minutes per megapixel"
