"""The local engine: one process decodes in workers, runs the model, and writes in threads.

decode (worker processes, ``pipeline/loader.py``) -> infer (one model, batched, on the device) ->
postprocess + encode + write (a thread pool, so the device never waits on PNG compression),
each output's manifest row written as it is renamed into place. ``ray_engine`` runs the same
stages on a Ray cluster.
"""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import BinaryIO

from tqdm import tqdm

from ..errors import DeviceMemoryError
from .dataset import DecodeDataset, DecodeItem
from .infer import Predictor
from .loader import DecodedParts
from .output import Job, ModelFacts, Row, Writer
from .reader import Source
from .report import Manifest, RunSummary
from .target import OutputTarget


def process_photos(
    target: OutputTarget,
    predictor: Predictor,
    pending: list[Source],
    record: Callable[..., None],
    progress: bool | None,
    summary: RunSummary,
    manifest: Manifest,
    log: Callable[[str], None],
    stdout: BinaryIO | None,
) -> None:
    """Cut out ``pending`` with ``predictor``, recording each row as its output is written."""
    run = target.run
    batch_size = predictor.batch_size
    # A handful of images decode faster in this process than it takes to start workers.
    workers = 0 if target.to_stdout or len(pending) <= batch_size else max(0, run.workers)
    dataset = DecodeDataset([s.path for s in pending], predictor.size, run.max_pixels, predictor.cfg.interpolation)
    show = progress if progress is not None else sys.stderr.isatty()
    bar = tqdm(total=len(pending), disable=not show, unit="img", file=sys.stderr, dynamic_ncols=True)
    pool = ThreadPoolExecutor(max_workers=max(1, run.writer_threads), thread_name_prefix="bgcut-write")
    inflight: deque[Future[Row]] = deque()
    limit = max(2, run.writer_threads) * 2 + batch_size  # bounded: decoded images wait here, in RAM

    def drain(keep: int) -> None:
        while len(inflight) > keep:
            record(inflight.popleft().result(), in_manifest=True)
            bar.update(1)

    def warn(message: str) -> None:
        log(f"bgcut: warning: {message}")

    writer = Writer(target, ModelFacts(predictor.model_name, predictor.sha256, predictor.size), stdout)

    def written(job: Job) -> Row:
        """Write one output and, at once, its manifest row: a kill -9 between the rename and the
        row would leave a finished output that no row accounts for."""
        row = writer.write(job)
        manifest.add(row)
        return row

    predictor.warn = warn
    # The run holds the model's share of the cores and the freed memory around this (bgcut/run.py).
    decoding = DecodedParts(dataset, workers, warn)
    try:
        for batch in model_batches(decoding, batch_size):
            good = [it for it in batch if it.error is None]
            for it in batch:
                if it.error is not None:
                    record(Row(pending[it.index].display, status="failed", error=it.error, warning=it.warning))
                    bar.update(1)
            masks = predictor.masks(
                [it.model_input for it in good], [it.rgb.shape[:2] for it in good], failures="yield"
            )
            for it, mask in zip(good, masks, strict=True):
                if isinstance(mask, DeviceMemoryError):  # this one input fails; the run goes on
                    record(Row(pending[it.index].display, status="failed", error=str(mask), warning=it.warning))
                    bar.update(1)
                    continue
                inflight.append(pool.submit(written, Job(pending[it.index], it, mask)))
            drain(limit)
        drain(0)
    except KeyboardInterrupt:
        # Stop reading; let the writes already started finish (each is atomic anyway).
        summary.interrupted = True
        for fut in inflight:
            fut.cancel()
        drain_started = [f for f in inflight if not f.cancelled()]
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


def model_batches(parts: Iterable[list[DecodeItem]], size: int) -> Iterator[list[DecodeItem]]:
    """Decoded parts regrouped into batches of ``size`` decoded photos each (the last may be
    short), with the failed ones among them: a forward pass is never half padding."""
    batch: list[DecodeItem] = []
    good = 0
    for part in parts:
        for item in part:
            batch.append(item)
            good += item.error is None
            if good == size:
                yield batch
                batch, good = [], 0
    if batch:
        yield batch


def _finish(summary: RunSummary, *steps: Callable[[], object]) -> None:
    """Run every clean-up step even when Ctrl-C or SIGTERM lands in the middle of one: the run
    is then marked interrupted, the step is run once more, and the next ones still run."""
    for step in steps:
        try:
            step()
        except KeyboardInterrupt:
            summary.interrupted = True
            step()
