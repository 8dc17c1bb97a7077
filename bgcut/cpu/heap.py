"""Keep freed memory in the process heap while a model runs on the CPU (glibc only).

glibc serves each allocation above its mmap threshold (128 KiB, rising by itself to at most
32 MiB) with fresh pages from the kernel and unmaps them again on free. One 1024x1024
IS-Net forward allocates and frees about 0.9 GB of feature maps, most of them 64 MiB or
larger, so every forward page-faults about 229,000 pages that the kernel must zero: 0.35 s
of a 2.0 s forward on 2 cores (bench/RESULTS.md, "IS-Net on CPU"). Raising the mmap and
trim thresholds while the model runs lets each feature map reuse the memory of one freed
before it, as onnxruntime's arena does; the forward drops to about 1.65 s with 0 faults.

The setting is process-wide, so it is scoped: ``retained_heap()`` raises the thresholds on
entry and, when the outermost user leaves, restores glibc's defaults and hands the free
memory back to the kernel with ``malloc_trim``. The run loop holds it for a whole run; the
predictor holds it for each forward, so ``Remover`` calls benefit too. Decode workers, which live
only for a run, keep it for their whole life (``retain_for_this_process``).

Only the main arena can hold chunks this large (glibc's per-thread arenas are at most 64
MiB), so the gain is for a model that runs on the main thread, which is where the engine
runs it. Elsewhere (macOS, musl) this is a no-op. A user who tunes malloc themselves
(``MALLOC_MMAP_THRESHOLD_``, ``GLIBC_TUNABLES``) is left alone, and ``BGCUT_RETAIN_HEAP=0``
turns it off.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
import threading
from collections.abc import Iterator
from contextlib import contextmanager

# mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# glibc's documented defaults, restored on exit (mallopt has no getter; setting a value also
# turns glibc's dynamic threshold off, which these fixed defaults approximate).
_DEFAULT_MMAP_THRESHOLD = 128 * 1024
_DEFAULT_TRIM_THRESHOLD = 128 * 1024
# Large enough for a batch of IS-Net feature maps (8 x 64 MiB); the kernel still maps
# anything bigger directly.
_RETAIN_THRESHOLD = 1 << 30

_lock = threading.Lock()
_depth = 0


def _libc() -> ctypes.CDLL | None:
    """glibc, when this process runs on it and nobody asked us to keep out of malloc's way."""
    if os.environ.get("BGCUT_RETAIN_HEAP", "1") == "0":
        return None
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or "MALLOC_TRIM_THRESHOLD_" in os.environ:
        return None
    if "glibc.malloc" in os.environ.get("GLIBC_TUNABLES", ""):
        return None
    if platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _libc()


def active() -> bool:
    """Whether a ``retained_heap()`` block is open (for tests and diagnostics)."""
    return _depth > 0


@contextmanager
def retained_heap(device_type: str = "cpu") -> Iterator[None]:
    """Within this block, freed large allocations stay in the heap for reuse (re-entrant).

    ``device_type`` is where the model runs: on an accelerator the feature maps are not in
    host memory, so nothing changes.
    """
    global _depth
    libc = _LIBC
    if libc is None or device_type != "cpu":
        yield
        return
    with _lock:
        if _depth == 0:
            _retain(libc)
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                libc.mallopt(_M_MMAP_THRESHOLD, _DEFAULT_MMAP_THRESHOLD)
                libc.mallopt(_M_TRIM_THRESHOLD, _DEFAULT_TRIM_THRESHOLD)
                libc.malloc_trim(0)


def retain_for_this_process() -> None:
    """Keep freed large allocations in the heap for the rest of this process's life.

    For a process that exists only for one run: a decode worker allocates and frees a photo's
    buffers (the decoded pixels, PIL's copy, the model's input) for every file, and with glibc's
    thresholds each came from fresh pages that the kernel zeroed and faulted in, and was
    unmapped again. The process's memory stays at its peak until it exits, which a worker
    reaches on its largest photo anyway. The same opt-outs as ``retained_heap`` apply.
    """
    if _LIBC is not None:
        _retain(_LIBC)


def _retain(libc: ctypes.CDLL) -> None:
    """The setting itself: large freed blocks stay in the heap instead of going back to the kernel."""
    libc.mallopt(_M_MMAP_THRESHOLD, _RETAIN_THRESHOLD)
    libc.mallopt(_M_TRIM_THRESHOLD, _RETAIN_THRESHOLD)
