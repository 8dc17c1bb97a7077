"""Batches of decoded inputs from worker processes, surviving a worker that dies.

A decode worker can die under the run: the kernel's out-of-memory killer picks it, someone
runs ``kill -9`` on it, or a decoder crashes on a file. torch's DataLoader then raises and
stops. Here the loader is rebuilt over the batches not yet received, and the files that were
in the workers' hands when it died are retried once, one at a time in a single fresh worker,
so that a file that kills a worker again is reported by name and costs no other file.
"""

from __future__ import annotations

import functools
import multiprocessing
import multiprocessing.context
import multiprocessing.forkserver
import os
from collections import deque
from collections.abc import Callable, Iterator

from torch.utils.data import DataLoader

from .dataset import DecodeDataset, DecodeItem, collate, init_worker

PREFETCH = 2  # batches each worker decodes ahead


def worker_context() -> multiprocessing.context.BaseContext:
    """Decode workers start from a fork server, not by forking this process.

    By the time the DataLoader starts, this process has thread pools (OpenCV's, torch's,
    the writer threads); a plain fork copies their locks in whatever state they are in,
    and a worker can hang forever on its first OpenCV call. The fork server is a clean,
    single-threaded process that imports the decoder once, so workers still start fast.

    Python starts the fork server with ``-c``, which puts the current folder first on its
    ``sys.path``: a ``concurrent.py`` there would be imported by torch inside it. It is started
    here with ``PYTHONSAFEPATH`` (Python 3.11+), which leaves the current folder out.
    """
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["bgcut.pipeline.dataset"])
    saved = os.environ.get("PYTHONSAFEPATH")
    os.environ["PYTHONSAFEPATH"] = "1"
    try:
        multiprocessing.forkserver.ensure_running()
    finally:
        if saved is None:
            del os.environ["PYTHONSAFEPATH"]
        else:
            os.environ["PYTHONSAFEPATH"] = saved
    return ctx


def decoded_batches(
    dataset: DecodeDataset,
    batches: list[list[int]],
    workers: int,
    pin_memory: bool,
    warn: Callable[[str], None],
) -> Iterator[list[DecodeItem]]:
    """Yield each batch of ``batches`` (lists of dataset indices) decoded, in order.

    With ``workers`` = 0 the main process decodes. Otherwise a dead worker is reported with
    ``warn`` and its files retried as the module docstring says; the run goes on either way.
    """
    if workers == 0:
        for indices in batches:
            yield [dataset[i] for i in indices]
        return
    queue = deque(batches)
    ctx = worker_context()
    while queue:
        loader = _loader(dataset, list(queue), workers, PREFETCH, pin_memory, ctx)
        batches_in = iter(loader)
        try:
            for batch in batches_in:
                queue.popleft()
                yield batch
            return
        except Exception as e:  # noqa: BLE001 - a dead worker (RuntimeError), or anything else it left behind
            reason = " ".join(str(e).split()) or type(e).__name__
        finally:
            del batches_in  # shuts the surviving workers down
        # The batches handed out and not received: PREFETCH per worker, in order (DataLoader keeps order).
        held = [i for _ in range(min(len(queue), workers * PREFETCH)) for i in queue.popleft()]
        warn(f"a decode worker died ({reason}); retrying its {len(held)} file(s) one at a time")
        retried = list(_one_at_a_time(dataset, held, pin_memory, ctx))
        size = max(1, len(batches[0]))
        for start in range(0, len(retried), size):
            yield retried[start : start + size]


def _one_at_a_time(
    dataset: DecodeDataset, indices: list[int], pin_memory: bool, ctx: multiprocessing.context.BaseContext
) -> Iterator[DecodeItem]:
    """Decode ``indices`` in one worker that holds one file at a time; a file during which it dies fails."""
    todo = deque(indices)
    while todo:
        batches_in = iter(_loader(dataset, [[i] for i in todo], 1, 1, pin_memory, ctx))
        try:
            for (item,) in batches_in:
                todo.popleft()
                yield item
        except Exception:  # noqa: BLE001 - the worker died again, holding exactly todo[0]
            culprit = todo.popleft()
            yield DecodeItem(culprit, error="the decode worker process died twice while reading this file")
        finally:
            del batches_in


def _loader(
    dataset: DecodeDataset,
    batches: list[list[int]],
    workers: int,
    prefetch: int,
    pin_memory: bool,
    ctx: multiprocessing.context.BaseContext,
) -> DataLoader:
    return DataLoader(
        dataset,
        batch_sampler=batches,
        num_workers=workers,
        collate_fn=collate,
        pin_memory=pin_memory,
        worker_init_fn=functools.partial(init_worker, os.getpid()),
        multiprocessing_context=ctx,
        prefetch_factor=prefetch,
        persistent_workers=False,
    )
