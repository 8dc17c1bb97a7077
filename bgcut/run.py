"""``remove_backgrounds``: the only place that knows the order of the stages, for photos and clips.

reader (list inputs, skip finished ones) -> guard (where outputs go, whether a folder resumes)
-> the model -> an engine: ``pipeline.local_engine`` for photos (decode workers, batched
inference, writer threads), ``video.run`` for clips, or ``pipeline.ray_engine`` on a cluster ->
``pipeline.report`` (each row counted, said and written to the manifest; the summary).
A bad file becomes a failed row with its reason; it never stops the batch.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import BinaryIO

from .config import OutputOptions, PostOptions, RunOptions, VideoOptions
from .cpu.cores import cores_for_model
from .cpu.heap import retained_heap
from .devices import pick_device, pick_dtype
from .errors import UsageError
from .pipeline import guard
from .pipeline.infer import Predictor, cluster_model
from .pipeline.local_engine import process_photos
from .pipeline.matting import require_pymatting
from .pipeline.output import Row
from .pipeline.reader import Listing, Source, is_animated_gif, is_video, list_sources, shard_of
from .pipeline.report import (
    Manifest,
    Recorder,
    RunSummary,
    log_to_stderr,
    manifest_path,
    no_inputs_line,
    printable,
    record_passed_over,
    skipped_row,
)
from .pipeline.target import STDOUT, OutputTarget
from .storage import is_url, sweep_temporaries

__all__ = ["RunSummary", "remove_backgrounds"]


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
    log: Callable[[str], None] = log_to_stderr,
    stdout: BinaryIO | None = None,
    predictor: Predictor | None = None,
    redo: set[str] | None = None,
) -> RunSummary:
    """Cut out every image in ``inputs`` into ``output``: a folder, one file (``cut.png``, one
    input), or ``"-"`` for stdout. ``"-"`` among the inputs reads ``stdin_lines`` (paths), or is
    the image in the file ``stdin_image``.

    Videos among the inputs (``reader.VIDEO_EXTENSIONS``) become what ``video`` says, one
    output each, after the images (``bgcut/video``).

    ``predictor`` is a model already loaded for ``run`` (``bgcut --watch`` keeps one between
    batches). ``redo`` takes only these files from what the inputs list (absolute paths), and
    cuts them out again even where their output exists (a watched file that was replaced).

    Returns the summary with one row per input; never raises for a bad image or video.

    Raises:
        UsageError: options that do not fit together, the output folder is an input or a file,
            or the manifest cannot be written.
        UnknownModelError, WeightsUnavailableError, ChecksumError, WeightsMismatchError: the model.
    """
    output = str(output)
    run, out, post = run or RunOptions(), (out or OutputOptions()).for_output(output), post or PostOptions()
    video = video or VideoOptions()
    if redo is not None:
        run = replace(run, overwrite=True)  # a replaced input is cut out again over its old output
    started = time.time()
    if run.engine == "ray" and output == STDOUT:
        raise UsageError("--engine ray writes files; use the local engine for -o -")
    guard.check_output(output)
    # The device and precision, chosen once and before any work: one that cannot work is a usage
    # error that leaves OUT as it was. (Ray's actors choose their own, on their own machines.)
    device = pick_device(run.device)
    dtype = pick_dtype(run.precision, device)
    t0 = time.perf_counter()  # before the output stage: its set-up (pymatting's first import) is part of the run
    if post.refine == "matting" and (note := require_pymatting()) is not None:
        log(f"bgcut: note: {note}")
    target = OutputTarget(run, out, post, output)
    summary = RunSummary()
    listing = list_sources(inputs, None if target.to_stdout else output, stdin_lines, stdin_image)
    found = len(listing.sources) + len(listing.errors)
    guard.check_output_count(target, output, listing)
    clips = {s.path for s in listing.sources if is_video(s.path) or is_animated_gif(s.path)}
    if clips:
        guard.check_video_output(target, output, out)
    if not target.to_stdout:
        guard.check_output_not_input(inputs, output)
        guard.check_no_output_is_an_input(target, listing.sources, clips, video)
    if redo is not None:
        listing.sources = [s for s in listing.sources if os.path.abspath(s.path) in redo]
        listing.errors = [(arg, why) for arg, why in listing.errors if os.path.abspath(arg) in redo]
        listing.passed_over = [(p, why) for p, why in listing.passed_over if os.path.abspath(p) in redo]
    if run.shard is not None:
        index, count = run.shard
        listing.sources = [s for s in listing.sources if shard_of(s.key, count) == index]
        listing.errors = [(arg, why) for arg, why in listing.errors if shard_of(arg, count) == index]
    if found == 0:
        summary.no_inputs = True
        log(no_inputs_line(inputs, listing.passed_over))
        return summary
    settings = guard.check_settings(target, output, video)
    manifest_file = manifest_path(run)
    guard.check_manifest(manifest_file, listing.sources)
    manifest = Manifest(manifest_file, log)
    record = Recorder(summary, manifest, log)

    def warn(message: str) -> None:
        log(f"bgcut: warning: {message}")

    try:
        local_folder = not target.to_stdout and not is_url(output) and Path(output).is_dir()
        if local_folder and (removed := sweep_temporaries(Path(output), started)):
            log(f"bgcut: removed {len(removed)} temporary file(s) left under {printable(output)} by a killed run")
        pending, videos = _sort(target, listing, clips, inputs, video, record, manifest, log)
        if pending or videos:
            # The model before anything is written: weights that cannot be used leave OUT as it was.
            # Ray's actors load it on their own machines; the driver checks it and reads its config.
            if run.engine == "ray":
                cluster = cluster_model(run)
            else:
                model = predictor if predictor is not None else Predictor.load(run, device, dtype)
                model.warn = warn  # a batch size lowered
                step = model.step()
            if settings is not None and target.dest is not None:
                # An output folder that cannot be written is not an error here: each file's write says so, by name.
                with contextlib.suppress(OSError):
                    target.dest.write(guard.SETTINGS_FILE, settings)
            if run.engine == "ray":
                from .pipeline import ray_engine  # Ray is an extra: imported only for --engine ray

                ray_engine.run_on_ray(target, cluster, pending, record, summary)
            else:
                # The model's share of the cores (cpu/cores.py), and freed memory held so that
                # consecutive forwards reuse each other's (cpu/heap.py): for the whole local run,
                # photos and clips alike, which run the one model's step.
                with cores_for_model(model.device.type, step.size), retained_heap(model.device.type):
                    if pending:
                        to = stdout if stdout is not None else sys.stdout.buffer
                        process_photos(target, step, pending, record, progress, summary, manifest, warn, to)
                    if videos and not summary.interrupted:
                        from .video.run import process_videos  # PyAV is an extra: imported only for clips

                        process_videos(target, step, videos, video, record, progress)
    except KeyboardInterrupt:  # between images, or while the run was closing: the summary still says so
        summary.interrupted = True
    finally:
        manifest.close()
        summary.manifest_error = manifest.error
        summary.seconds = time.perf_counter() - t0
    return summary


def _sort(
    target: OutputTarget,
    listing: Listing,
    clips: set[str],
    inputs: list[str],
    video: VideoOptions,
    record: Recorder,
    manifest: Manifest,
    log: Callable[[str], None],
) -> tuple[list[Source], list[Source]]:
    """The rows known before any work (listing errors, files passed over, finished outputs), and
    the photos and clips left to do."""
    for warning in listing.warnings:
        log(f"bgcut: warning: {printable(warning)}")
    for arg, reason in listing.errors:
        record(Row(arg, status="failed", error=reason))
    record_passed_over(listing.passed_over, record, log)
    pending, videos, passed_over = [], [], 0
    can_read_video = not clips or _pyav_installed()
    for source in listing.sources:
        if source.path in clips:
            if not can_read_video and source.path not in inputs:
                passed_over += 1  # found in a folder: photos-only installs keep working as before
            elif (row := _video_not_started(target, source, video)) is not None:
                record(row)
            else:
                videos.append(source)
        elif target.finished(source):
            record(skipped_row(target, source, manifest))
        else:
            pending.append(source)
    if passed_over:
        hint = "pip install 'bgcut[video]'"
        log(f"bgcut: warning: {passed_over} video file(s) in the input folders left out: {hint}")
    return pending, videos


def _pyav_installed() -> bool:
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


def _video_not_started(target: OutputTarget, source: Source, video: VideoOptions) -> Row | None:
    """The row of a video that is not to be processed (finished already, or unable to be), else None."""
    if target.run.engine == "ray":
        return Row(source.display, status="failed", error="videos run on the local engine: leave out --engine ray")
    if is_url(source.path) or target.dest is None or target.dest.remote:
        return Row(source.display, status="failed", error="videos are read from and written to local files")
    name = video.spec.output_name(source.key)
    if not target.run.overwrite and target.dest.exists(name):
        return Row(source.display, [target.dest.locate(name)], status="skipped")
    return None
