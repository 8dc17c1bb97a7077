"""The local engine: one process decodes in workers, runs the model, and writes in threads.

decode (worker processes, ``pipeline/loader.py``) -> infer (one model, batched, on the device) ->
postprocess + encode + write (a thread pool, so the device never waits on PNG compression),
each output's manifest row written as it is renamed into place. ``ray_engine`` runs the same
stages on a Ray cluster.
"""

from __future__ import annotations

import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import BinaryIO

from tqdm import tqdm

from ..errors import DeviceMemoryError
from .dataset import DecodeDataset, DecodeItem
from .loader import DecodedParts
from .model_step import ModelStep
from .output import Job, Row, Writer
from .reader import Source
from .report import Manifest, RunSummary
from .target import OutputTarget

# Full-size photos held between decoding and writing, bounded by their pixels as well as their
# count (bench/RESULTS.md, "Large photos"): a batch is cut short once its photos hold
# BATCH_PIXELS, queued writes are waited for once they hold QUEUED_PIXELS, and writes run
# together only within WRITING_PIXELS (one write takes about 17 bytes per pixel at its peak).
# Photos up to about 12 MP never reach the first and the last; 100 MP scans are held one or two
# at a time instead of a dozen. A batch cut short is padded like the last one, so no mask changes.
BATCH_PIXELS = 100_000_000
QUEUED_PIXELS = 100_000_000
WRITING_PIXELS = 100_000_000


def process_photos(
    target: OutputTarget,
    model: ModelStep,
    pending: list[Source],
    record: Callable[..., None],
    progress: bool | None,
    summary: RunSummary,
    manifest: Manifest,
    warn: Callable[[str], None],
    stdout: BinaryIO | None,
) -> None:
    """Cut out ``pending`` with ``model``, recording each row as its output is written; ``warn``
    says what the run goes on despite (a decode worker restarted)."""
    run = target.run
    batch_size = model.batch_size
    # A handful of images decode faster in this process than it takes to start workers.
    workers = 0 if target.to_stdout or len(pending) <= batch_size else max(0, run.workers)
    dataset = DecodeDataset([s.path for s in pending], model.size, run.max_pixels, model.interpolation)
    show = progress if progress is not None else sys.stderr.isatty()
    bar = tqdm(total=len(pending), disable=not show, unit="img", file=sys.stderr, dynamic_ncols=True)
    pool = ThreadPoolExecutor(max_workers=max(1, run.writer_threads), thread_name_prefix="bgcut-write")
    inflight: deque[tuple[Future[Row], int]] = deque()  # each write, with its photo's pixels
    limit = max(2, run.writer_threads) * 2 + batch_size  # bounded: decoded images wait here, in RAM

    def drain(keep: int, keep_pixels: int | None = None) -> None:
        """Record finished writes, oldest first, until at most ``keep`` are left (and, given
        ``keep_pixels``, until they hold at most that many pixels, or one is left)."""

        def over_pixels() -> bool:
            return keep_pixels is not None and len(inflight) > 1 and sum(p for _, p in inflight) > keep_pixels

        while len(inflight) > keep or over_pixels():
            record(inflight.popleft()[0].result(), in_manifest=True)
            bar.update(1)

    writer = Writer(target, model.facts, stdout)

    writing = PixelGate(WRITING_PIXELS)

    def written(job: Job) -> Row:
        """Write one output and, at once, its manifest row: a kill -9 between the rename and the
        row would leave a finished output that no row accounts for."""
        with writing.held(job.mask.size):
            row = writer.write(job)
        manifest.add(row)
        return row

    # The run holds the model's share of the cores and the freed memory around this (bgcut/run.py).
    decoding = DecodedParts(dataset, workers, warn)
    try:
        for batch in model_batches(decoding, batch_size, BATCH_PIXELS):
            good = [it for it in batch if it.error is None]
            for it in batch:
                if it.error is not None:
                    record(Row(pending[it.index].display, status="failed", error=it.error, warning=it.warning))
                    bar.update(1)
            masks = model.masks([it.model_input for it in good], [it.rgb.shape[:2] for it in good])
            for it, mask in zip(good, masks, strict=True):
                if isinstance(mask, DeviceMemoryError):  # this one input fails; the run goes on
                    record(Row(pending[it.index].display, status="failed", error=str(mask), warning=it.warning))
                    bar.update(1)
                    continue
                inflight.append((pool.submit(written, Job(pending[it.index], it, mask)), mask.size))
                drain(limit + batch_size, QUEUED_PIXELS)  # the count as before: at most a batch over the limit
            drain(limit)
        drain(0)
    except KeyboardInterrupt:
        # Stop reading; let the writes already started finish (each is atomic anyway).
        summary.interrupted = True
        for fut, _ in inflight:
            fut.cancel()
        drain_started = [f for f, _ in inflight if not f.cancelled()]
        inflight.clear()
        for fut in drain_started:
            record(fut.result(), in_manifest=True)
    finally:
        _finish(
            summary,
            lambda: pool.shutdown(wait=True, cancel_futures=True),
            decoding.close,  # shuts the decode worker processes down
            bar.close,
        )


def model_batches(
    parts: Iterable[list[DecodeItem]], size: int, max_pixels: int | None = None
) -> Iterator[list[DecodeItem]]:
    """Decoded parts regrouped into batches of ``size`` decoded photos each, with the failed ones
    among them: a forward pass is never half padding. A batch is short at the end, and once its
    photos' full-size pixels reach ``max_pixels`` (what fills the memory is those, not the
    model's inputs)."""
    batch: list[DecodeItem] = []
    good = pixels = 0
    for part in parts:
        for item in part:
            batch.append(item)
            if item.error is None:
                good += 1
                pixels += item.rgb.shape[0] * item.rgb.shape[1] if item.rgb is not None else 0
            if good == size or (max_pixels is not None and good and pixels >= max_pixels):
                yield batch
                batch, good, pixels = [], 0, 0
    if batch:
        yield batch


class PixelGate:
    """Work that may run together while its photos hold at most ``total`` pixels; a photo larger
    than that alone still runs, once nothing else does."""

    def __init__(self, total: int) -> None:
        self.total, self.used = total, 0
        self._changed = threading.Condition()

    @contextmanager
    def held(self, pixels: int) -> Iterator[None]:
        with self._changed:
            self._changed.wait_for(lambda: self.used == 0 or self.used + pixels <= self.total)
            self.used += pixels
        try:
            yield
        finally:
            with self._changed:
                self.used -= pixels
                self._changed.notify_all()


def _finish(summary: RunSummary, *steps: Callable[[], object]) -> None:
    """Run every clean-up step even when Ctrl-C or SIGTERM lands in the middle of one: the run
    is then marked interrupted, the step is run once more, and the next ones still run."""
    for step in steps:
        try:
            step()
        except KeyboardInterrupt:
            summary.interrupted = True
            step()
