"""Python's cyclic garbage collector kept off what lives as long as the process (torch's modules).

torch's import makes some hundreds of thousands of objects that are never freed. The collector
walked them three times over while they were made and found nothing to free (about 0.15 s of a
one-photo run), and once more at exit (about 0.3 s on this project's 2-core machine). The
command line and the decode workers' fork server use these two; library callers are left alone.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def imports_uncollected() -> Iterator[None]:
    """Import heavy modules (torch) with the collector off, then freeze what they made, so the
    collections that follow do not walk it either. The collector is back on after the block,
    before any work begins, even when an import fails."""
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()


def no_collection_at_exit() -> None:
    """Spare the process the collector's last pass at interpreter exit: it frees nothing the
    operating system would not take back. Call it only when the process ends next; bgcut's files
    are closed and renamed by then, and the interpreter still flushes stdout and stderr."""
    gc.freeze()
