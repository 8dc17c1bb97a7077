"""``remove_backgrounds``: the only place that knows the order of the stages.

reader (list inputs, skip finished ones) -> decode (DataLoader worker processes) ->
infer (one model, batched, on the device) -> postprocess + encode + write (a thread pool,
so the device never waits on PNG compression) -> manifest and summary (main thread).
A bad file becomes a failed row with its reason; it never stops the batch.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import BinaryIO, TextIO

import torch
from tqdm import tqdm

from .. import codecs
from ..config import OutputOptions, PostOptions, PretrainedCfg, RunOptions, VideoOptions
from ..cpu.cores import available_cores, threads_for_model
from ..cpu.heap import retained_heap
from ..errors import DeviceMemoryError, UsageError
from ..models import DEFAULT_MODEL, create_model, sha256_file
from ..storage import append_lines, is_url, same_place, sweep_temporaries
from .dataset import DecodeDataset
from .infer import Predictor, pick_device, pick_dtype
from .loader import decoded_batches
from .output import STDOUT, Job, OutputStage, Row, is_file_target
from .reader import SAME_FILE, VIDEO_EXTENSIONS, Source, is_animated_gif, is_video, list_sources, shard_of


@dataclass
class RunSummary:
    done: int = 0
    skipped: int = 0
    empty: int = 0
    failed: int = 0
    seconds: float = 0.0
    interrupted: bool = False
    rows: list[Row] = field(default_factory=list)
    manifest_error: str | None = None  # the manifest could not be written (the outputs were)
    no_inputs: bool = False  # the inputs held no image at all
    passed_over: dict[str, int] = field(default_factory=dict)  # files in folders not read, by extension

    @property
    def processed(self) -> int:
        return self.done + self.empty

    @property
    def images_per_second(self) -> float:
        return self.processed / self.seconds if self.seconds > 0 else 0.0

    @property
    def ok(self) -> bool:
        return self.failed == 0 and not self.interrupted and self.manifest_error is None and not self.no_inputs

    @property
    def video_frames(self) -> tuple[int, int]:
        """(videos done, their frames): a video is one row but many images' work."""
        done = [r.frames for r in self.rows if r.frames is not None and r.status == "done"]
        return len(done), sum(done)

    def line(self) -> str:
        parts = [f"{self.done} done", f"{self.skipped} skipped", f"{self.failed} failed"]
        if self.empty:
            parts.insert(1, f"{self.empty} with no foreground")
        if self.passed_over:
            kinds = ", ".join(f"{n} {ext}" for ext, n in sorted(self.passed_over.items()))
            parts.append(f"{sum(self.passed_over.values())} passed over ({kinds})")
        tail = " (interrupted)" if self.interrupted else ""
        videos, frames = self.video_frames
        if not frames:
            rate = f"{self.images_per_second:.2f} images/s"
        else:
            per_s = 1 / self.seconds if self.seconds > 0 else 0.0
            rate = f"{frames} video frames, {frames * per_s:.2f} frames/s"
            if self.processed > videos:
                rate = f"{(self.processed - videos) * per_s:.2f} images/s; " + rate
        return f"bgcut: {', '.join(parts)} in {self.seconds:.1f}s ({rate}){tail}"


def _stderr(msg: str) -> None:
    tqdm.write(msg, file=sys.stderr)


_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")


def printable(text: str) -> str:
    """``text`` on one line: control characters (a newline in a file name) and undecodable bytes
    (a non-UTF-8 name) as backslash escapes, so one error is always one line."""

    def escape(m: re.Match[str]) -> str:
        c = ord(m.group())
        return f"\\x{c - 0xDC00:02x}" if 0xDC80 <= c <= 0xDCFF else repr(m.group())[1:-1]

    return _UNPRINTABLE.sub(escape, text)


def _json_line(row: Row) -> str:
    """One manifest line, UTF-8 where the text allows; a non-UTF-8 file name is written with
    JSON escapes (``"\\udcff"``), which ``json.loads`` + ``os.fsencode`` turn back into its bytes."""
    fields = asdict(row)
    if fields["frames"] is None:  # an image: its line is as it was before videos
        del fields["frames"]
    line = json.dumps(fields, ensure_ascii=False)
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:
        line = json.dumps(fields, ensure_ascii=True)
    return line + "\n"


FACTS = ("width", "height", "bbox", "fg_fraction", "model", "weights_sha256")


def _earlier_facts(path: Path) -> dict[str, dict]:
    """Each input's facts from the rows already in a manifest file (an earlier run's), for the rows
    of outputs a rerun skips. A damaged or half-written line (a killed run's last) is left out."""
    facts: dict[str, dict] = {}
    if not path.is_file():  # not yet written, or a device (/dev/full would be read forever)
        return facts
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                try:
                    row = json.loads(line)
                except ValueError:
                    continue
                if isinstance(row, dict) and row.get("width") is not None and isinstance(row.get("input"), str):
                    facts[row["input"]] = {k: row.get(k) for k in FACTS}
    except OSError:
        pass
    return facts


def _skipped_row(engine: OutputStage, source: Source, manifest: _Manifest) -> Row:
    """The row of an output that exists already, with its facts: from the manifest's earlier row,
    or, when that row was lost (a run killed between the rename and the row), read back from the
    output itself. Only when a manifest is written: reading thousands of outputs costs time."""
    row = Row(source.display, [str(engine.output_path(source))], status="skipped")
    if not manifest.path:
        return row
    earlier = manifest.earlier.get(source.display)
    if earlier is not None:
        return replace(row, **earlier)
    facts = engine.read_back(source)
    if facts is None:
        return replace(row, warning="no earlier manifest row, and this format's output cannot tell its facts")
    return replace(row, **facts)


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


class _Manifest:
    """The ``--manifest`` file, checked and opened before any work.

    A local manifest is appended line by line; an object store cannot append, so a URL manifest
    collects its lines and is written once, at the end. A write that fails later (a full disk)
    is reported once; the run goes on without the manifest and its exit status says so.
    """

    def __init__(self, path: str | None, log: Callable[[str], None]) -> None:
        self.path, self.log = path, log
        self.lock = threading.Lock()
        self.earlier: dict[str, dict] = {}  # input -> the facts an earlier run's row in this file gave
        self.error: str | None = None
        self.file: TextIO | None = None
        self.remote_lines: list[str] | None = [] if path and is_url(path) else None
        if not path or self.remote_lines is not None:
            return
        target = Path(path)
        if target.is_dir():
            raise UsageError(f"--manifest {path} is a folder; give a file name, e.g. {target / 'run.jsonl'}")
        self.earlier = _earlier_facts(target)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            self.file = open(target, "a", encoding="utf-8")  # noqa: SIM115 - closed by close()
        except OSError as e:
            raise UsageError(f"--manifest {path}: cannot write it: {e.strerror or e}") from None

    def add(self, row: Row) -> None:
        """Append ``row``'s line; safe from the writer threads, each as its output is renamed into
        place, so that a killed run's manifest has a row for every finished output."""
        line = _json_line(row)
        with self.lock:
            if self.remote_lines is not None:
                self.remote_lines.append(line)
            elif self.file is not None and self.error is None:
                try:
                    self.file.write(line)
                    self.file.flush()
                except OSError as e:
                    self._failed(e)

    def _failed(self, e: OSError) -> None:
        self.error = f"cannot write the manifest: {e.strerror or e}"
        self.log(f"bgcut: error: {printable(str(self.path))}: {self.error}; the outputs are still written")

    def close(self) -> None:
        if self.file is not None:
            try:
                self.file.close()
            except OSError as e:
                if self.error is None:
                    self._failed(e)
        if self.remote_lines and self.path:
            append_lines(self.path, self.remote_lines)


def _check_output(output: str) -> None:
    if output == STDOUT or is_url(output) or is_file_target(output):
        return
    if Path(output).exists() and not Path(output).is_dir():
        raise UsageError(
            f"-o {output} is a file; -o names the folder the outputs are written into "
            "(or one output file ending in .png, .webp, .jpg)"
        )


def _check_no_output_is_an_input(
    engine: OutputStage, sources: list[Source], clips: set[str], video: VideoOptions
) -> None:
    """bgcut never writes over one of its inputs (`bgcut photo.jpg -o . --format jpg`,
    `bgcut clip.webm -o .`): each source's output as its kind names it, a photo's or a video's."""
    from ..video.run import output_name

    folders: dict[str, str] = {}
    inputs = {_same_key(s.path, folders): s for s in sources}
    for source in sources:
        if source.path in clips and engine.dest is not None:
            target: str | None = engine.dest.locate(output_name(source.key, video.spec))
        else:
            target = engine.output_file(source)
        if target is not None and (clash := inputs.get(_same_key(target, folders))) is not None:
            raise UsageError(
                f"the output for {source.display} would be {target}, "
                f"which is the input {clash.display}; choose another -o or --format"
            )


def _same_key(path: str, folders: dict[str, str]) -> str:
    """A name that two paths to one file share: the folder's real path (links to folders followed,
    once per folder, not once per file) joined with the file's own name. A link to a file is left
    as it is: an output is renamed over its own name, which replaces such a link, not its target."""
    if is_url(path):
        return path
    folder, name = os.path.split(os.path.abspath(path))
    if folder not in folders:
        folders[folder] = os.path.realpath(folder)
    return os.path.join(folders[folder], name)


SETTINGS_FILE = ".bgcut-settings.json"  # hidden: never read back as an input
MODEL_KEY = "--model/--weights"  # a registry name, or sha256:HEX of a --weights file
# Options added after the settings file was: the value that reproduces what came before them.
SETTINGS_BEFORE_OPTION: dict[str, object] = {
    "--refine": "none",
    "--refine-eps": PostOptions.refine_eps,  # no refinement: any value made the same outputs
    "--decontaminate": False,
    "--video-format": VideoOptions.format,
    "--steady": VideoOptions.steady,
    "--video-quality": VideoOptions.quality,
}


def _settings(run: RunOptions, out: OutputOptions, post: PostOptions, video: VideoOptions) -> dict[str, object]:
    """What decides an output's content: a folder holds outputs of one kind (see ``_check_settings``)."""
    model = _weights_identity(run.weights) if run.weights else run.model or DEFAULT_MODEL
    return {
        "--format": out.format,
        MODEL_KEY: model,
        "--size": run.size,
        "--precision": run.precision,
        "--bg": out.bg,
        "--margin": out.margin,
        "--per-object": out.per_object,
        "--min-area": out.min_area,
        **{f"--{k.replace('_', '-')}": v for k, v in asdict(post).items()},
        "--video-format": video.format,
        "--steady": video.steady,
        "--video-quality": video.quality,
    }


def _weights_identity(weights: str) -> str:
    """A ``--weights`` file by its content: ``-w runs/x`` and ``-w runs/x/model.safetensors``, or a
    copy elsewhere, are the same weights. A file that cannot be read is named by its path (loading
    it will say what is wrong)."""
    path = Path(weights)
    path = path / "model.safetensors" if path.is_dir() else path
    try:
        return f"sha256:{sha256_file(path)}"
    except OSError:
        return str(path.resolve())


def _same_model(before: object, now: str, run: RunOptions) -> bool:
    """A folder from before weights were named by content recorded the resolved path."""
    if before == now:
        return True
    old_path = bool(run.weights) and isinstance(before, str) and Path(before).is_absolute()
    return old_path and _weights_identity(str(before)) == now


def _check_settings(engine: OutputStage, output: str, video: VideoOptions) -> bytes | None:
    """Resume by name is only right when the old outputs were made the same way.

    The folder keeps the settings of the run that filled it (``.bgcut-settings.json``). A run
    with other settings is refused in one line, unless ``--overwrite`` redoes every file; a
    folder from before this file existed is taken as it is. Returns the settings file to write
    once work starts, or None when it is already there.
    """
    if engine.dest is None:
        return None
    wanted = _settings(engine.run, engine.out, engine.post, video)
    try:
        found = engine.dest.read(SETTINGS_FILE)
        before = json.loads(found) if found else None
    except (OSError, ValueError):
        before = None  # unreadable or damaged: taken as absent, and written afresh when work starts
    if isinstance(before, dict):
        # A folder written before an option existed was made with what is now that option's "off" value.
        before = {**SETTINGS_BEFORE_OPTION, **before}
        if _same_model(before.get(MODEL_KEY), str(wanted[MODEL_KEY]), engine.run):
            before[MODEL_KEY] = wanted[MODEL_KEY]
    if isinstance(before, dict) and before != wanted and not engine.run.overwrite:
        changed = [f"{k} {before.get(k)} (now {v})" for k, v in wanted.items() if before.get(k) != v]
        raise UsageError(
            f"{output} holds outputs made with other settings: {', '.join(changed)}; "
            f"{_default_model_hint(engine.run, before)}rerun with those to resume, "
            "add --overwrite to redo every file with these, or choose another -o"
        )
    return (json.dumps(wanted, indent=1) + "\n").encode() if before != wanted else None


def _default_model_hint(run: RunOptions, before: dict) -> str:
    """When the folder was made by a model that was the default then, and no model was named now,
    say that the default changed and how to keep the old one."""
    was = before.get(MODEL_KEY)
    if run.model or run.weights or not isinstance(was, str) or was == DEFAULT_MODEL or Path(was).is_absolute():
        return ""
    return (
        f"the default model is now {DEFAULT_MODEL}: add -m {was} to go on with the model this folder was made with, or "
    )


def remove_backgrounds(
    inputs: list[str],
    output: str | Path,
    run: RunOptions | None = None,
    out: OutputOptions | None = None,
    post: PostOptions | None = None,
    *,
    video: VideoOptions | None = None,
    stdin_lines: Iterable[str] | None = None,
    stdin_image: str | None = None,
    progress: bool | None = None,
    log: Callable[[str], None] = _stderr,
    stdout: BinaryIO | None = None,
) -> RunSummary:
    """Cut out every image in ``inputs`` into ``output``: a folder, one file (``cut.png``, one
    input), or ``"-"`` for stdout. ``"-"`` among the inputs reads ``stdin_lines`` (paths), or is
    the image in the file ``stdin_image``.

    Videos among the inputs (``reader.VIDEO_EXTENSIONS``) become what ``video`` says, one
    output each, after the images (``bgcut/video``).

    Returns the summary with one row per input; never raises for a bad image or video.

    Raises:
        UsageError: options that do not fit together, the output folder is an input or a file,
            or the manifest cannot be written.
        UnknownModelError, WeightsUnavailableError, ChecksumError, WeightsMismatchError: the model.
    """
    run, out, post = run or RunOptions(), out or OutputOptions(), post or PostOptions()
    video = video or VideoOptions()
    output = str(output)
    started = time.time()
    if run.engine == "ray" and output == STDOUT:
        raise UsageError("--engine ray writes files; use the local engine for -o -")
    _check_output(output)
    pick_dtype(run.precision, pick_device(run.device))  # a device or precision that cannot work: before any work
    t0 = time.perf_counter()  # before the output stage: its set-up (pymatting's first import) is part of the run
    engine = OutputStage(run, out, post, output, log, stdout if stdout is not None else sys.stdout.buffer)
    summary = RunSummary()
    listing = list_sources(inputs, None if engine.to_stdout else output, stdin_lines, stdin_image)
    found = len(listing.sources) + len(listing.errors)
    if engine.to_stdout and found != 1:
        raise UsageError(f"-o - writes one image to stdout, but the inputs name {len(listing.sources)} images")
    if engine.to_file is not None and found != 1:
        raise UsageError(f"-o {output} names one output file, but the inputs name {found} images; give a folder")
    clips = {s.path for s in listing.sources if is_video(s.path) or is_animated_gif(s.path)}
    if clips:
        _check_video_output(engine, output, out)
    if not engine.to_stdout:
        _check_output_not_input(inputs, output)
        _check_no_output_is_an_input(engine, listing.sources, clips, video)
    if run.shard is not None:
        index, count = run.shard
        listing.sources = [s for s in listing.sources if shard_of(s.key, count) == index]
        listing.errors = [(arg, why) for arg, why in listing.errors if shard_of(arg, count) == index]
    if found == 0:
        summary.no_inputs = True
        named = printable(", ".join(inputs) or "-")
        verb = "holds" if len(inputs) <= 1 else "hold"
        why = ""
        if listing.passed_over:
            reasons = sorted({reason for _, reason in listing.passed_over})
            why = f" ({len(listing.passed_over)} file(s) passed over: {'; '.join(reasons)})"
        log(f"bgcut: error: no input images: {named} {verb} no image files{why}")
        return summary
    settings = _check_settings(engine, output, video)
    manifest = _Manifest(manifest_path(run), log)

    def record(row: Row, in_manifest: bool = False) -> None:
        """Count ``row`` in the summary, say its error or warning, and add it to the manifest unless
        a writer thread did so already (``in_manifest``)."""
        summary.rows.append(row)
        if row.status == "failed":
            summary.failed += 1
            log(f"bgcut: error: {printable(row.input)}: {printable(row.error or 'failed')}")
        elif row.status == "skipped":
            summary.skipped += 1
        elif row.status == PASSED_OVER:
            ext = PurePosixPath(row.input).suffix.lower() or "without extension"
            summary.passed_over[ext] = summary.passed_over.get(ext, 0) + 1
        elif row.status == "empty":
            summary.empty += 1
        else:
            summary.done += 1
        if row.warning:
            log(f"bgcut: warning: {printable(row.input)}: {printable(row.warning)}")
        if not in_manifest:
            manifest.add(row)

    try:
        local_folder = not engine.to_stdout and not is_url(output) and Path(output).is_dir()
        if local_folder and (removed := sweep_temporaries(Path(output), started)):
            log(f"bgcut: removed {len(removed)} temporary file(s) left under {printable(output)} by a killed run")
        for warning in listing.warnings:
            log(f"bgcut: warning: {printable(warning)}")
        for arg, reason in listing.errors:
            record(Row(arg, status="failed", error=reason))
        _record_passed_over(listing.passed_over, record, log)
        pending, videos, passed_over = [], [], 0
        can_read_video = not clips or _pyav_installed()
        for source in listing.sources:
            if source.path in clips:
                if not can_read_video and source.path not in inputs:
                    passed_over += 1  # found in a folder: photos-only installs keep working as before
                elif (row := _video_not_started(engine, source, video)) is not None:
                    record(row)
                else:
                    videos.append(source)
            elif engine.finished(source):
                record(_skipped_row(engine, source, manifest))
            else:
                pending.append(source)
        if passed_over:
            hint = "pip install 'bgcut[video]'"
            log(f"bgcut: warning: {passed_over} video file(s) in the input folders left out: {hint}")
        if pending or videos:
            # The model before anything is written: weights that cannot be used leave OUT as it was.
            if run.engine == "ray":
                model: Predictor | PretrainedCfg = create_model(run.model, run.weights, device="cpu").cfg
            else:
                model = Predictor.from_options(run)
            if settings is not None and engine.dest is not None:
                # An output folder that cannot be written is not an error here: each file's write says so, by name.
                with contextlib.suppress(OSError):
                    engine.dest.write(SETTINGS_FILE, settings)
            if isinstance(model, Predictor):
                if pending:
                    _process(engine, model, pending, record, progress, summary, manifest)
                if videos and not summary.interrupted:
                    _process_videos(engine, model, videos, video, record, progress)
            else:
                _process_ray(engine, model, pending, record, summary)
    except KeyboardInterrupt:  # between images, or while the run was closing: the summary still says so
        summary.interrupted = True
    finally:
        manifest.close()
        summary.manifest_error = manifest.error
        summary.seconds = time.perf_counter() - t0
    return summary


PASSED_OVER = "passed-over"  # a manifest status: a file in an input folder that bgcut does not read


def _record_passed_over(
    files: list[tuple[str, str]], record: Callable[[Row], None], log: Callable[[str], None]
) -> None:
    """A row for each file not read, and one warning per reason (the summary counts them)."""
    by_reason: dict[str, list[tuple[str, str]]] = {}
    for path, reason in files:
        record(Row(path, status=PASSED_OVER, error=reason))
        # Second names of one file differ in the name they point to: one warning for all of them.
        kind = SAME_FILE if reason.startswith(SAME_FILE) else reason
        by_reason.setdefault(kind, []).append((path, reason))
    for kind, found in by_reason.items():
        if not kind.startswith(codecs.NOT_READ):  # a README beside the photos needs no warning
            path, reason = found[0]
            log(f"bgcut: warning: {len(found)} file(s) passed over, e.g. {printable(path)}: {reason}")


def _process(
    engine: OutputStage,
    predictor: Predictor,
    pending: list[Source],
    record: Callable[..., None],
    progress: bool | None,
    summary: RunSummary,
    manifest: _Manifest,
) -> None:
    run = engine.run
    engine.model_name, engine.sha, engine.model_size = predictor.model_name, predictor.sha256, predictor.size
    device, batch_size = predictor.device, predictor.batch_size
    # A handful of images decode faster in this process than it takes to start workers.
    workers = 0 if engine.to_stdout or len(pending) <= batch_size else max(0, run.workers)
    dataset = DecodeDataset([s.path for s in pending], predictor.size, run.max_pixels, predictor.cfg.interpolation)
    order = [list(range(i, min(i + batch_size, len(pending)))) for i in range(0, len(pending), batch_size)]
    threads_before = _model_threads(predictor)
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
        engine.log(f"bgcut: warning: {message}")

    def written(job: Job) -> Row:
        """Write one output and, at once, its manifest row: a kill -9 between the rename and the
        row would leave a finished output that no row accounts for."""
        row = engine.write(job)
        manifest.add(row)
        return row

    predictor.warn = warn
    batches = decoded_batches(dataset, order, workers, device.type == "cuda", warn)
    # Held for the whole run so consecutive forwards reuse each other's memory (cpu/heap.py).
    with retained_heap(device.type):
        try:
            for batch in batches:
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
                lambda: torch.set_num_threads(threads_before),
                batches.close,  # shuts the decode worker processes down
                bar.close,
            )


def _pyav_installed() -> bool:
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


def _check_video_output(engine: OutputStage, output: str, out: OutputOptions) -> None:
    """Where a video can go: a local folder (its output is renamed into place when complete)."""
    if engine.to_stdout or engine.to_file is not None:
        raise UsageError(f"-o {output}: a video's output is a video file or a folder of frames; give a folder")
    if not is_url(output) and Path(output).suffix.lower() in VIDEO_EXTENSIONS and not Path(output).is_dir():
        raise UsageError(f"-o {output}: videos are written into a folder (as NAME.webm ...); give a folder")
    if out.per_object:
        raise UsageError("--per-object writes several files per image; it cannot apply to a video's frames")


def _video_not_started(engine: OutputStage, source: Source, video: VideoOptions) -> Row | None:
    """The row of a video that is not to be processed (finished already, or unable to be), else None."""
    from ..video.run import output_name

    if engine.run.engine == "ray":
        return Row(source.display, status="failed", error="videos run on the local engine: leave out --engine ray")
    if is_url(source.path) or engine.dest is None or engine.dest.remote:
        return Row(source.display, status="failed", error="videos are read from and written to local files")
    name = output_name(source.key, video.spec)
    if not engine.run.overwrite and engine.dest.exists(name):
        return Row(source.display, [engine.dest.locate(name)], status="skipped")
    return None


def _process_videos(
    engine: OutputStage,
    predictor: Predictor,
    videos: list[Source],
    video: VideoOptions,
    record: Callable[[Row], None],
    progress: bool | None,
) -> None:
    """Each video in turn, through the same model (``video.run.cut_video``)."""
    from ..video.run import cut_video, output_name

    assert engine.dest is not None
    show = progress if progress is not None else sys.stderr.isatty()
    threads_before = _model_threads(predictor)
    try:
        with retained_heap(predictor.device.type):
            for source in videos:
                final = Path(engine.dest.locate(output_name(source.key, video.spec)))
                with tqdm(disable=not show, unit="frame", file=sys.stderr, dynamic_ncols=True, desc=source.key) as bar:
                    record(
                        cut_video(
                            source.path,
                            source.display,
                            final,
                            predictor,
                            engine.post,
                            engine.out,
                            video,
                            engine.bg,
                            bar.update,
                        )
                    )
    finally:
        torch.set_num_threads(threads_before)


def _model_threads(predictor: Predictor) -> int:
    """Give the model its share of the cores; returns torch's thread count before, for the caller
    to restore at the end (a library must not keep a changed global).

    On CPU, the model's threads and the pipeline share the cores (cpu/cores.py): a fixed split, so
    that the arithmetic, and with it every output byte, is the same in every run.
    """
    before = torch.get_num_threads()
    if predictor.device.type == "cpu":
        torch.set_num_threads(threads_for_model(available_cores(), predictor.size))
    return before


def _finish(summary: RunSummary, *steps: Callable[[], object]) -> None:
    """Run every clean-up step even when Ctrl-C or SIGTERM lands in the middle of one: the run
    is then marked interrupted, the step is run once more, and the next ones still run."""
    for step in steps:
        try:
            step()
        except KeyboardInterrupt:
            summary.interrupted = True
            step()


def _process_ray(
    engine: OutputStage,
    cfg: PretrainedCfg,
    pending: list[Source],
    record: Callable[[Row], None],
    summary: RunSummary,
) -> None:
    """The same stages on Ray Data (see ``ray_engine``); rows come back as each input is written.
    The model is loaded by each actor; ``cfg`` gives the decode tasks its input size and resampler."""
    from . import ray_engine

    ray_engine.connect(engine.run.ray_address)
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
