"""Reading training pictures: an image/mask pair decoded and resized, and the decode workers' side.

No torch here: training's decode workers import only this module (and the decoder it names),
so they start in a fraction of a second instead of each importing torch.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from ..images import open_named, resize_rgb
from ..workers import exit_when_gone


def _read_mask(path: Path, size: int) -> np.ndarray:
    mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if mask is None:
        raise ValueError(f"{path}: cannot read mask")
    return cv2.resize(mask, (size, size), interpolation=cv2.INTER_LINEAR)


def decode_pair(
    item: tuple[Path, Path, Path | None], size: int, interpolation: str = "bilinear"
) -> tuple[np.ndarray, np.ndarray]:
    """(image, mask, teacher's mask or None) -> RGB (S, S, 3) and masks (C, S, S), uint8.

    The photo is resized as inference resizes it (``images.resize_rgb``, the model's resampler).
    """
    img_path, mask_path, soft_path = item
    rgb = resize_rgb(open_named(img_path).rgb, size, interpolation)
    masks = [_read_mask(mask_path, size)]
    if soft_path is not None:
        masks.append(_read_mask(soft_path, size))
    return rgb, np.stack(masks)


def decoded(decode: Callable[[object, int], tuple], size: int, item: object) -> tuple[np.ndarray, np.ndarray] | str:
    """``decode(item, size)``, or the failure's message (which names the file) instead of an exception."""
    try:
        return decode(item, size)
    except (OSError, ValueError) as e:  # ImageError is a ValueError
        return str(e)


_job: tuple[Callable[[object, int], tuple], int] | None = None  # a worker's decode and size


def init_worker(decode: Callable[[object, int], tuple], size: int, main_pid: int) -> None:
    global _job
    _job = (decode, size)
    cv2.setNumThreads(1)  # one process per core already
    # Ctrl-C reaches the whole process group; the main process decides what happens next.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    exit_when_gone(main_pid)


def decode_in_worker(job: tuple[int, object]) -> tuple[int, tuple[np.ndarray, np.ndarray] | str]:
    assert _job is not None
    i, item = job
    return i, decoded(*_job, item)
