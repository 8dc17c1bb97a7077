"""The decode workers' side of decoding: input paths -> model-ready arrays, without torch.

``DecodeDataset`` runs ``images.open_image`` and resizes for the model; a failure becomes an
error record for that one file rather than an exception that would stop the batch.
``init_worker`` sets up each decode worker process (its docstring says why each step is there),
and ``decode_part`` is a worker's task: a few files decoded and handed to the main process in
one block of memory (``pack``, ``unpack``).

Nothing here imports torch: the workers start while the main process is still importing it
(``pipeline/loader.py``), and a second import of torch on the other core would hold them back
by a second.
"""

from __future__ import annotations

import math
import mmap
import os
import signal
import socket
import sys
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import cv2
import numpy as np

from ..cpu.heap import retain_for_this_process
from ..errors import ImageError
from ..images import decoder_noise, model_input, open_image
from ..workers import exit_when_gone


@dataclass
class DecodeItem:
    """One decoded input: its arrays on success, or the error."""

    index: int
    model_input: np.ndarray | None = None  # 3 x S x S uint8
    rgb: np.ndarray | None = None  # H x W x 3 uint8, full size
    alpha: np.ndarray | None = None
    error: str | None = None
    warning: str | None = None


class DecodeDataset:
    """Input paths by index (a list, or a mapping for a part of one); never raises for a bad file."""

    def __init__(
        self, paths: Sequence[str] | Mapping[int, str], size: int, max_pixels: int, interpolation: str = "bilinear"
    ) -> None:
        self.paths, self.size, self.max_pixels, self.interpolation = paths, size, max_pixels, interpolation

    def __len__(self) -> int:
        return len(self.paths)

    def part(self, indices: Sequence[int]) -> DecodeDataset:
        """The same settings over ``indices`` only: what one worker task carries, so that a task
        does not pickle the whole list of inputs."""
        return DecodeDataset({i: self.paths[i] for i in indices}, self.size, self.max_pixels, self.interpolation)

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
                    model_input=model_input(dec.rgb, self.size, self.interpolation),
                    rgb=dec.rgb,
                    alpha=dec.alpha,
                    warning=dec.warning,
                )
        except ImageError as e:
            return DecodeItem(i, error=str(e))
        except MemoryError:
            return DecodeItem(i, error="out of memory while decoding")
        except Exception as e:  # noqa: BLE001 - resizing a strange image must not end the run either
            return DecodeItem(i, error=f"cannot prepare image: {type(e).__name__}: {e}")


# A worker's end of the socket its blocks travel on (``init_worker``).
_BLOCKS: list[socket.socket] = []


def init_worker(main_pid: int, blocks: socket.socket | None = None, nice: int = 0) -> None:
    """Set up one decode worker process.

    - ``nice`` first, so that the worker's threads inherit it: the main process runs the
      model, and a photo decoded ahead is worth less than the model's next batch.
    - One thread for OpenCV: each worker is already one of several processes.
    - Freed photo buffers stay in the worker's heap for the next file (``cpu.heap``).
    - SIGTERM and SIGINT are ignored: the main process owns the run and shuts the workers down
      itself, so a ``kill`` or a Ctrl-C sent to the whole process group ends the run with a
      summary, not with a worker's traceback.
    - The current folder leaves ``sys.path``: a worker must never import a user's ``concurrent.py``.
    - A watchdog thread exits the worker when the main process is gone (``kill -9``, the OOM
      killer): workers are children of the fork server, not of the main process, so nothing
      else would end them, and they would keep the caller's stdout and stderr pipes open.
    """
    if nice:
        os.nice(nice)
    cv2.setNumThreads(1)
    retain_for_this_process()
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    cwd = os.getcwd()
    sys.path[:] = [p for p in sys.path if p not in ("", ".", cwd)]
    if blocks is not None:
        _BLOCKS[:] = [blocks]
    exit_when_gone(main_pid)


# An item's arrays in a block: (name, byte offset, shape) for each one present.
Layout = list[tuple[str, int, tuple[int, ...]]]
_ARRAYS = ("model_input", "rgb", "alpha")


def decode_part(part: int, dataset: DecodeDataset, indices: Sequence[int]) -> list[tuple[DecodeItem, Layout]]:
    """A worker's task: decode ``indices`` and send their arrays to the main process as one block
    (``pack``), tagged with ``part``. Returns the items without their arrays, and where each
    array lies in the block."""
    items = [dataset[i] for i in indices]
    fd, layouts = pack(items)
    send_block(_BLOCKS[0], part, fd)
    return [(_bare(it), layout) for it, layout in zip(items, layouts, strict=True)]


def pack(items: Sequence[DecodeItem]) -> tuple[int | None, list[Layout]]:
    """The items' arrays copied into one new anonymous file (a file descriptor, None when no item
    has any), and each item's layout in it.

    A descriptor handed over a socket (``send_block``) costs the main process one mapping and
    no copy, and the memory goes back to the system when the last mapping is gone, whoever
    dies first: there is no name under /dev/shm for a killed run to leave behind."""
    layouts: list[Layout] = []
    offset = 0
    for it in items:
        layout = []
        for name in _ARRAYS:
            a = getattr(it, name)
            if a is not None:
                layout.append((name, offset, a.shape))
                offset += a.nbytes
        layouts.append(layout)
    if not offset:
        return None, layouts
    fd = _anonymous_file()
    try:
        # Written, not mapped and copied into: the kernel fills the file's pages as it takes them,
        # where a mapping would fault each one in first.
        arrays = [
            np.ascontiguousarray(getattr(it, name)) for it in items for name in _ARRAYS if getattr(it, name) is not None
        ]
        data = [memoryview(a).cast("B") for a in arrays]
        written = 0
        while written < offset:
            written += os.pwritev(fd, _from(data, written), written)
    except BaseException:
        os.close(fd)
        raise
    return fd, layouts


def _from(buffers: list[memoryview], skip: int) -> list[memoryview]:
    """``buffers`` less their first ``skip`` bytes (what a short write left to write)."""
    out = []
    for b in buffers:
        if skip >= len(b):
            skip -= len(b)
            continue
        out.append(b[skip:])
        skip = 0
    return out


def unpack(fd: int | None, parts: Sequence[tuple[DecodeItem, Layout]]) -> list[DecodeItem]:
    """The items of ``decode_part``, their arrays set as views into the block ``fd`` (closed here)."""
    if fd is None:
        return [replace(it) for it, _ in parts]
    try:
        # Populated at once: one call maps every page, where touching them would fault each in.
        flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
        block = mmap.mmap(fd, os.fstat(fd).st_size, flags=flags)
    finally:
        os.close(fd)
    # New items, not the ones given: those stay with the pool's finished tasks until the pool is
    # closed, and would keep every block of the run mapped.
    return [
        replace(
            it,
            **{
                name: np.frombuffer(block, np.uint8, math.prod(shape), start).reshape(shape)
                for name, start, shape in layout
            },
        )
        for it, layout in parts
    ]


def send_block(blocks: socket.socket, part: int, fd: int | None) -> None:
    """Tell the main process that ``part`` is decoded, handing it ``fd`` (closed here)."""
    try:
        socket.send_fds(blocks, [part.to_bytes(8, "little")], [] if fd is None else [fd])
    finally:
        if fd is not None:
            os.close(fd)


def _anonymous_file() -> int:
    """A file descriptor of an empty file in memory with no name in any folder."""
    if hasattr(os, "memfd_create"):  # Linux
        return os.memfd_create("bgcut-decode", os.MFD_CLOEXEC)
    fd, name = tempfile.mkstemp(prefix="bgcut-decode-")
    os.unlink(name)
    return fd


def _bare(item: DecodeItem) -> DecodeItem:
    return DecodeItem(item.index, error=item.error, warning=item.warning)
