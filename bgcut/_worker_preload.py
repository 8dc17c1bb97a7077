"""What a worker pool's fork server imports first (``bgcut.workers``): the modules its workers
need, named in ``BGCUT_WORKER_PRELOAD``, imported with Python's cyclic collector off and then
frozen.

The fork server imports torch on one core while the main process imports it on the other, and
the first batch waits for it. torch's import makes some hundreds of thousands of objects that
live as long as the process, and the collector walked them over and over while they were made
and found nothing to free. Frozen, they are also skipped by every collection in the workers
forked from the server, so a worker's collections do not touch (and copy) their pages either.
"""

from __future__ import annotations

import importlib
import os

from .collector import imports_uncollected
from .workers import PRELOAD_ENV

with imports_uncollected():
    for _name in filter(None, os.environ.get(PRELOAD_ENV, "").split(",")):
        importlib.import_module(_name)
