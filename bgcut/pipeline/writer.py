"""Writers: encode an array to bytes in the requested format, and write it atomically.

Atomic means: bytes go to a hidden temporary file in the destination folder, which is
renamed over the final name only when complete, so an interrupt, a full disk or a crash
never leaves a half-written output under a name that a rerun would trust.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np
from PIL import Image

TMP_SUFFIX = ".bgcut-tmp"


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
        # fpng: 10-20x faster than libpng at level 1 on cut-outs, files ~15% larger (bench/RESULTS.md).
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


# One encoder per file type that ``config.FORMATS`` writes. OpenCV for PNG/JPEG (fast, releases
# the GIL), PIL for WebP.
ENCODERS: dict[str, Callable[[np.ndarray, str, int], bytes]] = {".png": _png, ".jpg": _jpg, ".webp": _webp}


def encode(image: np.ndarray, ext: str, png: str = "fast", jpeg_quality: int = 95) -> bytes:
    """Encode an RGB, RGBA or L uint8 array as a file of type ``ext`` (".png", ".jpg", ".webp");
    ``png`` is ``OutputOptions.png``."""
    try:
        encoder = ENCODERS[ext]
    except KeyError:
        raise ValueError(f"unsupported output extension {ext!r}") from None
    return encoder(image, png, jpeg_quality)


NAME_MAX = 255  # bytes in one file name, on every common Linux and macOS file system


def temp_name(final: str) -> str:
    """The hidden name a file is written under before it is renamed to ``final``.

    ``.NAME.PID.RANDOM.bgcut-tmp``: the process id lets a later run tell a dead run's leftover
    from a live concurrent run's file (``sweep_temporaries``). A long ``final`` is shortened
    so that the temporary name, 20-odd bytes longer, still fits the file system's limit; a
    character cut in half by that is dropped.
    """
    tail = f".{os.getpid()}.{uuid.uuid4().hex[:8]}{TMP_SUFFIX}"
    head = os.fsencode(final)[: NAME_MAX - 1 - len(tail)].decode("utf-8", "ignore")
    return f".{head}{tail}"


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary name in the same folder, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / temp_name(path.name)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# The whole of ``temp_name``'s pattern: a hidden name, the writer's PID, 8 hex digits, the suffix.
# Anything else that merely ends in the suffix (a user's ``notes.bgcut-tmp``) is not bgcut's.
_TEMP_PID = re.compile(r"^\..+\.(\d+)\.[0-9a-f]{8}" + re.escape(TMP_SUFFIX) + "$", re.S)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, another user's
    return True


def sweep_temporaries(folder: Path, older_than: float) -> list[Path]:
    """Remove the temporary files a killed run left under ``folder``; returns what was removed.

    Only names of ``temp_name``'s whole pattern, last written before ``older_than`` (this run's
    start), whose writer is not a live process on this machine: a concurrent run's file in the
    middle of being written is never touched, and neither is a file of the user's that merely ends
    in the suffix.
    """
    removed: list[Path] = []
    for root, dirs, files in os.walk(folder):
        # A video's frame sequence is written into a temporary folder (video/encode.FrameFolder).
        for name in [*files, *dirs]:
            if not name.endswith(TMP_SUFFIX):
                continue
            path = Path(root, name)
            m = _TEMP_PID.match(name)
            if m is None:
                continue
            try:
                if path.stat().st_mtime >= older_than or _pid_alive(int(m.group(1))):
                    continue
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink()
            except OSError:
                continue  # gone already, or not ours to remove: neither stops the run
            removed.append(path)
        dirs[:] = [d for d in dirs if not d.endswith(TMP_SUFFIX)]
    return removed
