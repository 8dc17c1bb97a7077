"""What a worker pool's fork server imports first (``bgcut.workers``): the modules its workers
need, named in ``BGCUT_WORKER_PRELOAD``, imported with Python's cyclic collector off and then
frozen; and, in the fork server only, an exit without the interpreter's teardown.

The fork server imports torch on one core while the main process imports it on the other, and
the first batch waits for it. torch's import makes some hundreds of thousands of objects that
live as long as the process, and the collector walked them over and over while they were made
and found nothing to free. Frozen, they are also skipped by every collection in the workers
forked from the server, so a worker's collections do not touch (and copy) their pages either.

The fork server ends when the process that started it ends. Its interpreter then freed torch's
modules one by one: 0.17 s after a run had ended, with the run's stdout and stderr still open,
so a shell pipe or ``subprocess.run(..., capture_output=True)`` waited for it
(bench/RESULTS.md). It has nothing to write or clean up by then, so it leaves at once. The
workers it forks already end that way (``os._exit``).
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import multiprocessing.forkserver
import os
import sys

from .collector import imports_uncollected
from .workers import PRELOAD_ENV


def _in_fork_server() -> bool:
    """Whether this import runs inside ``multiprocessing.forkserver.main`` (its preload), not in
    a process that imported this module some other way."""
    frame = sys._getframe()
    while frame is not None:
        if frame.f_code is multiprocessing.forkserver.main.__code__:
            return True
        frame = frame.f_back
    return False


def _leave_now() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, OSError, ValueError):  # closed, or None
            stream.flush()
    os._exit(0)


if _in_fork_server():
    # Registered before the imports, so it runs after every exit handler that they register.
    atexit.register(_leave_now)

with imports_uncollected():
    for _name in filter(None, os.environ.get(PRELOAD_ENV, "").split(",")):
        importlib.import_module(_name)
