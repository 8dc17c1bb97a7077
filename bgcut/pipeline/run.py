"""``remove_backgrounds``: the only place that knows the order of the stages.

reader (list inputs, skip finished ones) -> decode (DataLoader worker processes) ->
infer (one model, batched, on the device) -> postprocess + encode + write (a thread pool,
so the device never waits on PNG compression) -> manifest and summary (main thread).
A bad file becomes a failed row with its reason; it never stops the batch.
"""

from __future__ import annotations

import json
import multiprocessing
import multiprocessing.context
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import BinaryIO

import cv2
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..config import FORMATS, OutputOptions, PostOptions, RunOptions
from ..errors import UsageError
from ..models import create_model
from .cores import CoreSplit, available_cores
from .dataset import DecodeDataset, DecodeItem, collate
from .heap import retained_heap
from .infer import Predictor, default_batch_size, pick_device, pick_dtype, upsample_mask
from .postprocess import Background, parse_background, parse_margin, render
from .reader import Source, list_sources, shard_of
from .storage import Destination, append_lines, is_url, same_place
from .writer import encode

STDOUT = "-"


@dataclass
class Row:
    """One manifest line: what happened to one input."""

    input: str
    outputs: list[str] = field(default_factory=list)
    status: str = "done"  # done | skipped | empty | failed
    error: str | None = None
    width: int | None = None
    height: int | None = None
    bbox: list[int] | None = None
    fg_fraction: float | None = None
    model: str | None = None
    weights_sha256: str | None = None
    warning: str | None = None


@dataclass
class RunSummary:
    done: int = 0
    skipped: int = 0
    empty: int = 0
    failed: int = 0
    seconds: float = 0.0
    interrupted: bool = False
    rows: list[Row] = field(default_factory=list)

    @property
    def processed(self) -> int:
        return self.done + self.empty

    @property
    def images_per_second(self) -> float:
        return self.processed / self.seconds if self.seconds > 0 else 0.0

    @property
    def ok(self) -> bool:
        return self.failed == 0 and not self.interrupted

    def line(self) -> str:
        parts = [f"{self.done} done", f"{self.skipped} skipped", f"{self.failed} failed"]
        if self.empty:
            parts.insert(1, f"{self.empty} with no foreground")
        tail = " (interrupted)" if self.interrupted else ""
        return f"bgcut: {', '.join(parts)} in {self.seconds:.1f}s ({self.images_per_second:.2f} images/s){tail}"


def _stderr(msg: str) -> None:
    tqdm.write(msg, file=sys.stderr)


def _init_worker(_: int) -> None:
    # Each decode worker is one process; letting each also spawn a thread per core oversubscribes the CPU.
    torch.set_num_threads(1)
    cv2.setNumThreads(1)


def _worker_context() -> multiprocessing.context.BaseContext:
    """Decode workers start from a fork server, not by forking this process.

    By the time the DataLoader starts, this process has thread pools (OpenCV's, torch's,
    the writer threads); a plain fork copies their locks in whatever state they are in,
    and a worker can hang forever on its first OpenCV call. The fork server is a clean,
    single-threaded process that imports the decoder once, so workers still start fast.
    """
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["bgcut.pipeline.dataset"])
    return ctx


@dataclass
class _Job:
    """Everything a writer thread needs for one input."""

    source: Source
    item: DecodeItem
    mask: object  # np.ndarray, uint8 H x W


class _Engine:
    def __init__(
        self,
        run: RunOptions,
        out: OutputOptions,
        post: PostOptions,
        output: str,
        log: Callable[[str], None],
        stdout: BinaryIO | None,
    ) -> None:
        if out.format not in FORMATS:
            raise UsageError(f"--format {out.format!r}: expected one of {', '.join(FORMATS)}")
        self.run, self.out, self.post, self.log = run, out, post, log
        self.to_stdout = output == STDOUT
        self.dest = None if self.to_stdout else Destination(output)  # a folder or a URL
        self.stdout = stdout
        self.bg: Background | None = parse_background(out.bg) if out.bg else None
        self.margin = parse_margin(out.margin)
        if not 0.0 <= post.threshold <= 1.0:
            raise UsageError(f"--threshold {post.threshold}: must be between 0 and 1")
        if self.to_stdout and out.per_object:
            raise UsageError("--per-object writes several files; it cannot write to stdout (-o -)")
        self.model_name: str | None = None
        self.sha: str | None = None

    def output_name(self, source: Source, suffix: str = "") -> str:
        """The output's "/"-separated name inside the output folder."""
        return f"{source.key}{suffix}{self.out.extension}"

    def output_path(self, source: Source, suffix: str = "") -> str:
        """The output as rows and messages show it: a path, or the full URL."""
        assert self.dest is not None
        return self.dest.locate(self.output_name(source, suffix))

    def finished(self, source: Source) -> bool:
        if self.dest is None or self.run.overwrite:
            return False
        return self.dest.exists(self.output_name(source, "_obj00" if self.out.per_object else ""))

    def write(self, job: _Job) -> Row:
        """Post-process, encode and write one input (runs in a writer thread)."""
        item, source = job.item, job.source
        rgb = item.rgb.numpy()
        h, w = rgb.shape[:2]
        row = Row(
            source.display, width=w, height=h, model=self.model_name, weights_sha256=self.sha, warning=item.warning
        )
        try:
            result = render(
                rgb,
                None if item.alpha is None else item.alpha.numpy(),
                job.mask,
                self.post,
                self.out.format,
                self.bg,
                self.margin,
                self.out.per_object,
                self.out.min_area,
            )
            row.bbox = list(result.bbox) if result.bbox else None
            row.fg_fraction = round(result.fg_fraction, 6)
            if not result.images:
                row.status = "empty"
                return row
            for suffix, image in result.images:
                data = encode(image, self.out.extension, self.out.png_compression)
                if self.to_stdout:
                    assert self.stdout is not None
                    self.stdout.write(data)
                    self.stdout.flush()
                    row.outputs.append(STDOUT)
                else:
                    assert self.dest is not None
                    self.dest.write(self.output_name(source, suffix), data)
                    row.outputs.append(self.output_path(source, suffix))
            if self.out.per_object:
                self._remove_stale_objects(source, len(result.images))
        except OSError as e:
            row.status, row.error = "failed", f"cannot write output: {e.strerror or e}"
        except Exception as e:  # noqa: BLE001 - one input's failure must not stop the batch
            row.status, row.error = "failed", f"{type(e).__name__}: {e}"
        return row

    def _remove_stale_objects(self, source: Source, n: int) -> None:
        # An --overwrite rerun that finds fewer objects must not leave the old extra crops behind.
        assert self.dest is not None
        while self.dest.remove_if_exists(self.output_name(source, f"_obj{n:02d}")):
            n += 1


def manifest_path(run: RunOptions) -> str | None:
    """The manifest file: with ``--shard I/N``, ``run.jsonl`` becomes ``run.shard-I-of-N.jsonl``.

    Jobs of an array often share a folder; each appends to its own part, and ``cat`` joins them.
    """
    if not run.manifest or run.shard is None:
        return run.manifest
    folder, sep, name = run.manifest.rpartition("/")  # strings, not Path: "s3://b/m.jsonl" must keep its "//"
    stem, dot, ext = name.rpartition(".") if "." in name else (name, "", "")
    index, count = run.shard
    return f"{folder}{sep}{stem}.shard-{index}-of-{count}{dot}{ext}"


def _check_output_not_input(inputs: list[str], output: str) -> None:
    for arg in inputs:
        if is_url(arg) or is_url(output):
            same = same_place(arg, output)
        else:
            same = arg != STDOUT and Path(arg).is_dir() and Path(arg).resolve() == Path(output).resolve()
        if same:
            raise UsageError(f"the output folder {output} is the input folder {arg}; choose another -o")


def remove_backgrounds(
    inputs: list[str],
    output: str | Path,
    run: RunOptions | None = None,
    out: OutputOptions | None = None,
    post: PostOptions | None = None,
    *,
    stdin_lines: Iterable[str] | None = None,
    progress: bool | None = None,
    log: Callable[[str], None] = _stderr,
    stdout: BinaryIO | None = None,
) -> RunSummary:
    """Cut out every image in ``inputs`` into ``output`` (a folder, or ``"-"`` for stdout).

    Returns the summary with one row per input; never raises for a bad image.

    Raises:
        UsageError: options that do not fit together, or the output folder is an input.
        UnknownModelError, WeightsUnavailableError, ChecksumError, WeightsMismatchError: the model.
    """
    run, out, post = run or RunOptions(), out or OutputOptions(), post or PostOptions()
    output = str(output)
    if run.engine not in ("local", "ray"):
        raise UsageError(f"--engine {run.engine!r}: expected local or ray")
    if run.engine == "ray" and output == STDOUT:
        raise UsageError("--engine ray writes files; use the local engine for -o -")
    engine = _Engine(run, out, post, output, log, stdout if stdout is not None else sys.stdout.buffer)
    t0 = time.perf_counter()
    summary = RunSummary()
    listing = list_sources(inputs, None if engine.to_stdout else output, stdin_lines)
    if engine.to_stdout and len(listing.sources) + len(listing.errors) != 1:
        raise UsageError(f"-o - writes one image to stdout, but the inputs name {len(listing.sources)} images")
    if not engine.to_stdout:
        _check_output_not_input(inputs, output)
    if run.shard is not None:
        index, count = run.shard
        listing.sources = [s for s in listing.sources if shard_of(s.key, count) == index]
        listing.errors = [(arg, why) for arg, why in listing.errors if shard_of(arg, count) == index]
    path = manifest_path(run)
    # An object store cannot append: a URL manifest collects its lines and is written once, at the end.
    remote_lines: list[str] | None = [] if path and is_url(path) else None
    manifest = open(path, "a", encoding="utf-8") if path and remote_lines is None else None  # noqa: SIM115

    def record(row: Row) -> None:
        summary.rows.append(row)
        if row.status == "failed":
            summary.failed += 1
            log(f"bgcut: error: {row.input}: {row.error}")
        elif row.status == "skipped":
            summary.skipped += 1
        elif row.status == "empty":
            summary.empty += 1
        else:
            summary.done += 1
        if row.warning:
            log(f"bgcut: warning: {row.input}: {row.warning}")
        if manifest is not None:
            manifest.write(json.dumps(asdict(row), ensure_ascii=False) + "\n")
            manifest.flush()
        elif remote_lines is not None:
            remote_lines.append(json.dumps(asdict(row), ensure_ascii=False) + "\n")

    try:
        for warning in listing.warnings:
            log(f"bgcut: warning: {warning}")
        for arg, reason in listing.errors:
            record(Row(arg, status="failed", error=reason))
        pending = []
        for source in listing.sources:
            if engine.finished(source):
                record(Row(source.display, [str(engine.output_path(source))], status="skipped"))
            else:
                pending.append(source)
        if pending and run.engine == "ray":
            _process_ray(engine, pending, record, summary)
        elif pending:
            _process(engine, pending, record, progress, summary)
    finally:
        if manifest is not None:
            manifest.close()
        if remote_lines and path:
            append_lines(path, remote_lines)
        summary.seconds = time.perf_counter() - t0
    return summary


def _timed_write(engine: _Engine, job: _Job) -> tuple[Row, float]:
    """``engine.write`` plus the CPU time it took in this writer thread (for ``CoreSplit``)."""
    t0 = time.thread_time()
    row = engine.write(job)
    return row, time.thread_time() - t0


def _process(
    engine: _Engine, pending: list[Source], record: Callable[[Row], None], progress: bool | None, summary: RunSummary
) -> None:
    run = engine.run
    device = pick_device(run.device)
    dtype = pick_dtype(run.precision, device)
    loaded = create_model(run.model, run.weights, device="cpu")
    engine.model_name, engine.sha = loaded.cfg.name, loaded.sha256
    predictor = Predictor(loaded, device, dtype, run.size)
    # A handful of images decode faster in this process than it takes to start workers.
    batch_size = run.batch_size or default_batch_size(device, predictor.size)
    workers = 0 if engine.to_stdout or len(pending) <= batch_size else max(0, run.workers)
    loader = DataLoader(
        DecodeDataset([s.path for s in pending], predictor.size, run.max_pixels, loaded.cfg.interpolation),
        batch_size=max(1, batch_size),
        num_workers=workers,
        collate_fn=collate,
        pin_memory=device.type == "cuda",
        worker_init_fn=_init_worker if workers else None,
        multiprocessing_context=_worker_context() if workers else None,
        prefetch_factor=2 if workers else None,
    )
    # On CPU, the model's threads and the pipeline share the cores; on a GPU the model needs none.
    threads_before = torch.get_num_threads()  # restored at the end: a library must not keep a changed global
    split = CoreSplit(available_cores(), threads_before) if device.type == "cpu" else None
    show = progress if progress is not None else sys.stderr.isatty()
    bar = tqdm(total=len(pending), disable=not show, unit="img", file=sys.stderr, dynamic_ncols=True)
    pool = ThreadPoolExecutor(max_workers=max(1, run.writer_threads), thread_name_prefix="bgcut-write")
    inflight: deque[Future[tuple[Row, float]]] = deque()
    limit = max(2, run.writer_threads) * 2 + batch_size  # bounded: decoded images wait here, in RAM

    def drain(keep: int) -> None:
        while len(inflight) > keep:
            row, cpu = inflight.popleft().result()
            if split is not None:
                split.add_pipeline(cpu)
            record(row)
            bar.update(1)

    batches = iter(loader)
    # Held for the whole run so consecutive forwards reuse each other's memory (heap.py).
    with retained_heap(device.type):
        try:
            for batch in batches:
                good = [it for it in batch if it.error is None]
                for it in batch:
                    if it.error is not None:
                        record(Row(pending[it.index].display, status="failed", error=it.error))
                        bar.update(1)
                if good:
                    t0 = time.thread_time()
                    masks = predictor(torch.stack([it.model_input for it in good]))
                    t1 = time.thread_time()
                    for it, mask in zip(good, masks, strict=True):
                        h, w = it.rgb.shape[:2]
                        job = _Job(pending[it.index], it, upsample_mask(mask, h, w))
                        inflight.append(pool.submit(_timed_write, engine, job))
                    if split is not None:
                        split.add_model(t1 - t0, len(good))
                        split.add_pipeline(time.thread_time() - t1 + sum(it.cpu_seconds for it in batch))
                        if (threads := split.decide()) is not None:
                            torch.set_num_threads(threads)
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
                record(fut.result()[0])
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            torch.set_num_threads(threads_before)
            del batches  # shuts the DataLoader's worker processes down
            bar.close()


def _process_ray(engine: _Engine, pending: list[Source], record: Callable[[Row], None], summary: RunSummary) -> None:
    """The same stages on Ray Data (see ``ray_engine``); rows come back as each input is written."""
    from . import ray_engine

    ray_engine.connect(engine.run.ray_address)
    cfg = create_model(engine.run.model, engine.run.weights, device="cpu").cfg  # also fails early on bad weights
    rows = ray_engine.cutout_dataset(
        ray_engine.sources_dataset(pending),
        engine.dest.where if engine.dest else "",
        engine.run,
        engine.out,
        engine.post,
        engine.run.size or cfg.input_size,
        cfg.interpolation,
    )
    try:
        for r in rows.iter_rows():
            record(Row(**json.loads(r["row"])))
    except KeyboardInterrupt:
        summary.interrupted = True
