"""Encoders: an array to the bytes of the file type a format writes (``config.FORMATS``).

Writing them to their place, atomically, is ``bgcut.storage``'s job (``atomic_write``).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from types import ModuleType

import cv2
import numpy as np
from PIL import Image


def _webp(image: np.ndarray, png: str, jpeg_quality: int) -> bytes:
    buf = io.BytesIO()
    # Lossless either way; the fastest effort setting encodes ~20x faster than PIL's default
    # (10 ms vs 230 ms for 854x480 RGBA) for files ~20% larger, still half the PNG size.
    Image.fromarray(image).save(buf, "WEBP", lossless=True, quality=10, method=0)
    return buf.getvalue()


def _bgr(image: np.ndarray) -> np.ndarray:
    """OpenCV's channel order."""
    if image.ndim == 3:
        return cv2.cvtColor(image, cv2.COLOR_RGBA2BGRA if image.shape[2] == 4 else cv2.COLOR_RGB2BGR)
    return image


def _fpng_module() -> ModuleType | None:
    try:
        import fpng  # MIT; wraps richgel999/fpng. A dependency with wheels for the common platforms
    except ImportError:  # elsewhere its absence costs speed only: libpng writes the same pixels
        return None
    return fpng


_FPNG = _fpng_module()


def _png(image: np.ndarray, png: str, jpeg_quality: int) -> bytes:
    if png == "small":
        # zlib's default level with libpng's adaptive choice among all five filters: level 9 made
        # files no smaller than 6 at twice to three times the time (bench/RESULTS.md).
        return _opencv(".png", _bgr(image), [cv2.IMWRITE_PNG_COMPRESSION, 6])
    if _FPNG is not None and image.ndim == 3 and image.shape[2] in (3, 4):
        # fpng: 8x faster than libpng at level 1 on davis16 cut-outs, files 6-21% larger; it holds the
        # GIL, where libpng does not (bench/RESULTS.md).
        return _FPNG.from_ndarray(np.ascontiguousarray(image))
    # Grey masks (fpng writes RGB and RGBA only), or no fpng: zlib level 1 with libpng's adaptive
    # choice among the cheap filters, half the time of level 3 with the default filters at equal size.
    params = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FAST_FILTERS]
    return _opencv(".png", _bgr(image), params)


def _jpg(image: np.ndarray, png: str, jpeg_quality: int) -> bytes:
    if image.ndim == 3 and image.shape[2] == 4:
        raise ValueError("JPEG has no alpha channel: composite onto a background first")
    return _opencv(".jpg", _bgr(image), [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])


def _opencv(ext: str, image: np.ndarray, params: list[int]) -> bytes:
    ok, data = cv2.imencode(ext, image, params)
    if not ok:
        raise OSError(f"encoding to {ext} failed")
    return data.tobytes()


# One encoder per file type that ``config.FORMATS`` writes: fpng or OpenCV for PNG, OpenCV for
# JPEG, PIL for WebP.
ENCODERS: dict[str, Callable[[np.ndarray, str, int], bytes]] = {".png": _png, ".jpg": _jpg, ".webp": _webp}


def encode(image: np.ndarray, ext: str, png: str = "fast", jpeg_quality: int = 95) -> bytes:
    """Encode an RGB, RGBA or L uint8 array as a file of type ``ext`` (".png", ".jpg", ".webp");
    ``png`` is ``OutputOptions.png``."""
    try:
        encoder = ENCODERS[ext]
    except KeyError:
        raise ValueError(f"unsupported output extension {ext!r}") from None
    return encoder(image, png, jpeg_quality)
