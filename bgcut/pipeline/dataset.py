"""The DataLoader side of decoding: worker processes turn input paths into model-ready tensors.

``DecodeDataset`` runs ``images.open_image`` in DataLoader workers and resizes for the model
there, so the main process only stacks tensors; a failure becomes an error record for that
one file rather than an exception that would stop the batch. ``init_worker`` sets up each
worker process (see its docstring for why each step is there).
"""

from __future__ import annotations

import math
import os
import signal
import sys
import threading
import warnings
from dataclasses import dataclass

import cv2
import torch

from ..cpu.heap import retain_for_this_process
from ..errors import ImageError
from ..images import decoder_noise, open_image
from ..workers import exit_when_gone
from .preprocess import resize_for_model


@dataclass
class DecodeItem:
    """What one DataLoader worker returns for one input: tensors on success, or the error."""

    index: int
    model_input: torch.Tensor | None = None
    rgb: torch.Tensor | None = None  # H x W x 3 uint8, full size
    alpha: torch.Tensor | None = None
    error: str | None = None
    warning: str | None = None

    def pin_memory(self) -> DecodeItem:
        """Called by the DataLoader's pin-memory thread on CUDA: only the batch input crosses the bus."""
        if self.model_input is not None:
            self.model_input = self.model_input.pin_memory()
        return self


class DecodeDataset(torch.utils.data.Dataset):
    """Map-style dataset over input paths; never raises for a bad file."""

    def __init__(self, paths: list[str], size: int, max_pixels: int, interpolation: str = "bilinear") -> None:
        self.paths, self.size, self.max_pixels, self.interpolation = paths, size, max_pixels, interpolation

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> DecodeItem:
        with decoder_noise() as noise:
            item = self._decode(i)
        if noise:
            said = "; ".join(dict.fromkeys(noise))  # libtiff repeats one warning per strip
            said = said if len(said) <= 300 else said[:297] + "..."
            if item.error is not None:
                item.error = f"{item.error} (decoder said: {said})"
            else:
                item.warning = f"{item.warning}; decoder said: {said}" if item.warning else f"decoder said: {said}"
        return item

    def _decode(self, i: int) -> DecodeItem:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # PIL's EXIF/ICC chatter; real problems raise
                dec = open_image(self.paths[i], self.max_pixels, fast_jpeg=True)  # inside decoder_noise
                return DecodeItem(
                    i,
                    model_input=resize_for_model(dec.rgb, self.size, self.interpolation),
                    rgb=torch.from_numpy(dec.rgb),
                    alpha=None if dec.alpha is None else torch.from_numpy(dec.alpha),
                    warning=dec.warning,
                )
        except ImageError as e:
            return DecodeItem(i, error=str(e))
        except MemoryError:
            return DecodeItem(i, error="out of memory while decoding")
        except Exception as e:  # noqa: BLE001 - resizing a strange image must not end the run either
            return DecodeItem(i, error=f"cannot prepare image: {type(e).__name__}: {e}")


def init_worker(main_pid: int, _worker_id: int) -> None:
    """Set up one decode worker process (``functools.partial(init_worker, os.getpid())``).

    - One thread each for torch and OpenCV: each worker is already one of several processes.
    - Freed photo buffers stay in the worker's heap for the next file (``cpu.heap``).
    - SIGTERM is ignored: the main process owns the run and shuts the workers down itself, so a
      ``kill`` sent to the whole process group ends the run with a summary, not a worker crash.
    - The current folder leaves ``sys.path``: a worker must never import a user's ``concurrent.py``.
    - A watchdog thread exits the worker when the main process is gone (``kill -9``, the OOM
      killer): workers are children of the fork server, not of the main process, so nothing
      else would end them, and they would keep the caller's stdout and stderr pipes open.
    - A handoff the main process breaks off prints nothing (``quiet_broken_handoffs``).
    """
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    retain_for_this_process()
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    quiet_broken_handoffs()
    cwd = os.getcwd()
    sys.path[:] = [p for p in sys.path if p not in ("", ".", cwd)]
    exit_when_gone(main_pid)


def quiet_broken_handoffs() -> None:
    """Keep a worker quiet when the main process hangs up in the middle of taking a tensor.

    A worker's tensors reach the main process as file descriptors, handed over by
    multiprocessing's resource-sharer thread in the worker. When Ctrl-C or SIGTERM lands in the
    main process while it is picking one up, it drops the connection, and that thread reports
    the broken pipe through ``sys.excepthook``: a traceback on the user's terminal under a run
    that is ending cleanly. Only a lost connection in a thread other than the worker's own is
    silenced; anything else is still printed.
    """
    previous = sys.excepthook

    def hook(kind: type[BaseException], value: BaseException, tb: object) -> None:
        if isinstance(value, (ConnectionError, EOFError)) and threading.current_thread() is not threading.main_thread():
            return
        previous(kind, value, tb)  # type: ignore[arg-type]

    sys.excepthook = hook


_TENSORS = ("model_input", "rgb", "alpha")


class PackedBatch(list):
    """A decode worker's batch: its items' tensors travel in one shared-memory block.

    Each tensor a worker returns reaches the main process as its own file descriptor, fetched
    over a socket from the worker (torch's sharing strategy): 16 round trips a batch of 8, and
    the main process's thread is the one that waits for them. Packed, a batch is one. The
    items arrive as a plain list whose tensors are views into that block.
    """

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        tensors = [t for it in self for t in (getattr(it, name) for name in _TENSORS) if t is not None]
        if not tensors or any(t.dtype != torch.uint8 for t in tensors):
            return list, (list(self),)
        # A new block in shared memory, as torch's default_collate makes one in a worker: a plain
        # one would be copied into shared memory again as it is sent.
        block = tensors[0].new(tensors[0]._typed_storage()._new_shared(sum(t.numel() for t in tensors)))
        layout: list[tuple[DecodeItem, dict[str, tuple[int, tuple[int, ...]]]]] = []
        offset = 0
        for it in self:
            spans = {}
            for name in _TENSORS:
                t = getattr(it, name)
                if t is not None:
                    block[offset : offset + t.numel()].view(t.shape).copy_(t)
                    spans[name] = (offset, tuple(t.shape))
                    offset += t.numel()
            layout.append((DecodeItem(it.index, error=it.error, warning=it.warning), spans))
        return _unpacked, (block, layout)


def _unpacked(
    block: torch.Tensor, layout: list[tuple[DecodeItem, dict[str, tuple[int, tuple[int, ...]]]]]
) -> list[DecodeItem]:
    items = []
    for item, spans in layout:
        for name, (offset, shape) in spans.items():
            setattr(item, name, block[offset : offset + math.prod(shape)].view(shape))
        items.append(item)
    return items


def collate(items: list[DecodeItem]) -> list[DecodeItem]:
    """Keep items as a list (full-size images differ in shape, and errors carry no tensors),
    packed for the trip to the main process (``PackedBatch``)."""
    return PackedBatch(items)
