"""Batches of decoded inputs from worker processes, surviving a worker that dies.

A decode worker can die under the run: the kernel's out-of-memory killer picks it, someone
runs ``kill -9`` on it, or a decoder crashes on a file. torch's DataLoader then raises and
stops. Here the loader is rebuilt over the batches not yet received, and the files that were
in the workers' hands when it died are retried once, one at a time in a single fresh worker,
so that a file that kills a worker again is reported by name and costs no other file.
"""

from __future__ import annotations

import functools
import multiprocessing.context
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator

from torch.utils.data import DataLoader

from ..workers import GIVE_UP_AFTER, worker_context, worker_count_taken_as_given
from .dataset import DecodeDataset, DecodeItem, collate, init_worker

PREFETCH = 2  # batches each worker decodes ahead


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
    Workers that die ``GIVE_UP_AFTER`` times in a row with no file decoded in between point at
    the machine, not at a file (a broken install, memory exhausted): the rest is then decoded
    in this process, since each death costs torch's 5-second liveness check.
    """
    if workers == 0:
        yield from _in_process(dataset, batches)
        return
    size = max(1, len(batches[0]))
    queue = deque(batches)
    ctx = worker_context()
    deaths = 0
    while queue:
        batches_in = _started(dataset, list(queue), workers, PREFETCH, pin_memory, ctx)
        try:
            for batch in batches_in:
                queue.popleft()
                deaths = 0
                yield batch
            return
        except Exception as e:  # noqa: BLE001 - a dead worker (RuntimeError), or anything else it left behind
            reason = " ".join(str(e).split()) or type(e).__name__
        finally:
            del batches_in  # shuts the surviving workers down
        deaths += 1
        # The batches handed out and not received: PREFETCH per worker, in order (DataLoader keeps order).
        held = deque(i for _ in range(min(len(queue), workers * PREFETCH)) for i in queue.popleft())
        if deaths < GIVE_UP_AFTER:
            warn(f"a decode worker died ({reason}); retrying its {len(held)} file(s) one at a time")
            retried = []
            for item, died in _one_at_a_time(dataset, held, pin_memory, ctx):
                retried.append(item)
                deaths = deaths + 1 if died else 0
                if deaths >= GIVE_UP_AFTER:
                    break
            for start in range(0, len(retried), size):
                yield retried[start : start + size]
        if deaths >= GIVE_UP_AFTER:
            warn(
                f"decode worker processes died {deaths} times in a row ({reason}); decoding in this process from now on"
            )
            rest = list(held) + [i for batch in queue for i in batch]
            queue.clear()
            yield from _in_process(dataset, [rest[k : k + size] for k in range(0, len(rest), size)])



def _in_process(dataset: DecodeDataset, batches: Iterable[list[int]]) -> Iterator[list[DecodeItem]]:
    for indices in batches:
        yield [dataset[i] for i in indices]


def _one_at_a_time(
    dataset: DecodeDataset, todo: deque[int], pin_memory: bool, ctx: multiprocessing.context.BaseContext
) -> Iterator[tuple[DecodeItem, bool]]:
    """Decode ``todo`` (emptied as it goes) in one worker holding one file at a time.

    Yields (item, died): a file during which the worker died again comes back as an error item
    with ``died`` set, so the caller can count deaths and stop early; the rest stays in ``todo``.
    """
    while todo:
        batches_in = _started(dataset, [[i] for i in todo], 1, 1, pin_memory, ctx)
        try:
            for (item,) in batches_in:
                todo.popleft()
                yield item, False
        except Exception:  # noqa: BLE001 - the worker died again, holding exactly todo[0]
            culprit = todo.popleft()
            yield DecodeItem(culprit, error="the decode worker process died twice while reading this file"), True
        finally:
            del batches_in


def _started(
    dataset: DecodeDataset,
    batches: list[list[int]],
    workers: int,
    prefetch: int,
    pin_memory: bool,
    ctx: multiprocessing.context.BaseContext,
) -> Iterator[list[DecodeItem]]:
    """A DataLoader over ``batches``, its workers started (torch's worker-count advice left out)."""
    with worker_count_taken_as_given():
        return iter(
            DataLoader(
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
        )
