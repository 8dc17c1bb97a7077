"""``--refine matting``: closed-form alpha matting (Levin, Lischinski and Weiss, 2008) in a band
around the mask's edge, for hair and fur, through pymatting (``pip install 'bgcut[matting]'``).

The mask gives a trimap: pixels the mask is sure of, shrunk by ``band`` px, stay as they are;
the band between them is solved so that alpha follows the photo's local colour lines. It is a
sparse linear solve over the band: seconds per megapixel, which is why it is behind a flag and
a large photo gets a warning (``matting_cost``).
"""

from __future__ import annotations

import cv2
import numpy as np

from ..errors import UsageError

INSTALL_HINT = "--refine matting needs pymatting: pip install 'bgcut[matting]'"
SURE = 0.95  # mask values at least this (or at most 1 - this) are taken as sure, before shrinking
WARN_MEGAPIXELS = 2.0


def require_pymatting() -> None:
    """A usage error before any work when the extra is missing."""
    try:
        import pymatting  # noqa: F401
    except ImportError:
        raise UsageError(INSTALL_HINT) from None


def trimap(mask: np.ndarray, band: int) -> np.ndarray:
    """1 where the mask is surely foreground, 0 surely background, 0.5 in the band to solve."""
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * band + 1, 2 * band + 1))
    fg = cv2.erode((mask >= round(255 * SURE)).astype(np.uint8), disk).astype(bool)
    bg = cv2.erode((mask <= round(255 * (1 - SURE))).astype(np.uint8), disk).astype(bool)
    out = np.full(mask.shape, 0.5)
    out[fg], out[bg] = 1.0, 0.0
    return out


def closed_form_alpha(photo: np.ndarray, mask: np.ndarray, band: int) -> np.ndarray:
    """The mask (H x W uint8) with its edge band re-solved by closed-form matting against ``photo``."""
    try:
        from pymatting import estimate_alpha_cf
    except ImportError:
        raise UsageError(INSTALL_HINT) from None
    tri = trimap(mask, band)
    unknown = tri == 0.5
    # Nothing to solve, or no sure foreground or background to solve from (a mask the model was
    # unsure of everywhere): the mask stays as it is.
    if not unknown.any() or not (tri == 1).any() or not (tri == 0).any():
        return mask
    alpha = estimate_alpha_cf(photo.astype(np.float64) / 255.0, tri)
    out = mask.copy()
    out[unknown] = np.clip(alpha[unknown] * 255 + 0.5, 0, 255).astype(np.uint8)
    return out


def matting_cost(height: int, width: int) -> str | None:
    """The one-line warning for a photo large enough that matting takes a while, or None."""
    mp = height * width / 1e6
    if mp < WARN_MEGAPIXELS:
        return None
    return f"--refine matting on a {mp:.1f} MP image: closed-form matting takes seconds to minutes per megapixel"
