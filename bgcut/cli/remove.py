"""``bgcut [remove] INPUT... -o OUT``: the main job."""

from __future__ import annotations

import os
import sys
from enum import Enum
from typing import Annotated

import typer

from ..collector import imports_uncollected
from ..config import (
    FORMATS,
    KEEP,
    MARGIN,
    VIDEO_FORMATS,
    OutputOptions,
    PostOptions,
    RunOptions,
    VideoOptions,
    format_help,
    parse_shard,
    video_format_help,
)
from ._common import (
    DeviceOpt,
    ModelOpt,
    Precision,
    PrecisionOpt,
    QuietOpt,
    Refine,
    RefineEpsOpt,
    RefineOpt,
    SizeOpt,
    WeightsOpt,
    WorkersOpt,
    fail,
    interrupt_status,
    ranged,
    ranged_by,
    read_stdin,
    reported_errors,
    terminated_as_interrupt,
)

# The choices come from config.py, and so do the defaults: one place says what a run does by default.
Format = Enum("Format", {name: name for name in FORMATS}, type=str)  # type: ignore[misc]
Keep = Enum("Keep", {name: name for name in KEEP}, type=str)  # type: ignore[misc]
VideoFormatChoice = Enum("VideoFormatChoice", {name: name for name in VIDEO_FORMATS}, type=str)  # type: ignore[misc]
RUN, OUT, POST, VIDEO = RunOptions(), OutputOptions(), PostOptions(), VideoOptions()


def remove_cli(
    inputs: Annotated[
        list[str],
        typer.Argument(
            help="Image files, folders (walked recursively), fsspec URLs (s3://bucket/photos, gs://...) and/or - (stdin: the bytes of one image, or paths, one per line or NUL-separated with -0).",
            show_default=False,
            metavar="INPUT",
        ),
    ],
    output: Annotated[
        str,
        typer.Option(
            "--output",
            "-o",
            help="Output folder or URL (the input tree is reproduced); with one input, an output file (cut.png, cut.webp, cut.jpg) or - for stdout.",
        ),
    ],
    format: Annotated[
        Format | None,
        typer.Option(
            "--format",
            "-f",
            help=format_help(),
            show_default=False,
        ),
    ] = None,  # noqa: A002
    bg: Annotated[
        str | None,
        typer.Option(
            "--bg",
            help="Composite onto a colour (white, #00ff00, 0,255,0), a photo (path), or the photo's own background blurred (blur, or blur:SIGMA in pixels, default 15); jpg defaults to white.",
        ),
    ] = OUT.bg,
    threshold: Annotated[
        float,
        typer.Option(
            "--threshold",
            "-t",
            help=ranged(
                "Foreground cut (0-1) for --binary, objects, boxes and --fill-holes.", PostOptions, "threshold"
            ),
        ),
    ] = POST.threshold,
    binary: Annotated[
        bool, typer.Option("--binary", help="Hard 0/255 alpha at --threshold instead of soft edges.")
    ] = POST.binary,
    keep: Annotated[Keep, typer.Option("--keep", help="Keep all objects, or only the largest connected one.")] = Keep(
        POST.keep
    ),
    fill_holes: Annotated[
        bool, typer.Option("--fill-holes", help="Make enclosed background holes opaque.")
    ] = POST.fill_holes,
    erode: Annotated[
        int, typer.Option("--erode", help=ranged("Shrink the mask by this many pixels.", PostOptions, "erode"))
    ] = POST.erode,
    dilate: Annotated[
        int, typer.Option("--dilate", help=ranged("Grow the mask by this many pixels.", PostOptions, "dilate"))
    ] = POST.dilate,
    feather: Annotated[
        float,
        typer.Option(
            "--feather", help=ranged("Soften the mask edge over about this many pixels.", PostOptions, "feather")
        ),
    ] = POST.feather,
    refine: RefineOpt = Refine(POST.refine),
    refine_eps: RefineEpsOpt = POST.refine_eps,
    decontaminate: Annotated[
        bool,
        typer.Option(
            "--decontaminate/--no-decontaminate",
            help="Colour outputs: estimate the object's own colour where the alpha is partial (hair, blur), so the old background does not show as a halo.",
        ),
    ] = POST.decontaminate,
    video_format: Annotated[
        VideoFormatChoice, typer.Option("--video-format", help=video_format_help())
    ] = VideoFormatChoice(VIDEO.format),
    steady: Annotated[
        float,
        typer.Option(
            "--steady",
            help=ranged(
                "Videos: steady the mask from frame to frame, keeping up to this share (0 is off) of the last frame's mask where the new one differs only a little (bench/RESULTS.md measures it).",
                VideoOptions,
                "steady",
            ),
        ),
    ] = VIDEO.steady,
    video_quality: Annotated[
        int,
        typer.Option(
            "--video-quality",
            help=ranged("Videos: the encoder's CRF (lower: better, larger).", VideoOptions, "quality"),
        ),
    ] = VIDEO.quality,
    margin: Annotated[
        str,
        typer.Option(
            "--margin", help=ranged_by("crop: margin around the box, pixels (16) or percent of the box (10%).", MARGIN)
        ),
    ] = OUT.margin,
    per_object: Annotated[
        bool,
        typer.Option(
            "--per-object",
            help="crop: one file per connected object, NAME_obj00.png, NAME_obj01.png, ... largest first.",
        ),
    ] = OUT.per_object,
    min_area: Annotated[
        int,
        typer.Option(
            "--min-area",
            help=ranged("--per-object: ignore objects smaller than this many pixels.", OutputOptions, "min_area"),
        ),
    ] = OUT.min_area,
    png: Annotated[
        str,
        typer.Option(
            "--png",
            metavar="fast|small",
            help="PNG files: fast (fpng for colour, 6-15% larger) or small (zlib level 6, 2-3x slower). Same pixels.",
        ),
    ] = OUT.png,
    model: ModelOpt = RUN.model,
    weights: WeightsOpt = RUN.weights,
    device: DeviceOpt = RUN.device,
    batch_size: Annotated[
        int | None,
        typer.Option(
            "--batch-size",
            "-b",
            help=ranged(
                "Images per forward pass (default: 8 on a GPU; on CPU up to 1 megapixel of model input: 8 for the 256 px bgcut-lite, 1 for the 1024 px default IS-Net, where larger CPU batches were slower).",
                RunOptions,
                "batch_size",
            ),
            show_default=False,
        ),
    ] = RUN.batch_size,
    workers: WorkersOpt = RUN.workers,
    precision: PrecisionOpt = Precision(RUN.precision),
    size: SizeOpt = RUN.size,
    max_pixels: Annotated[
        int,
        typer.Option(
            "--max-pixels",
            help=ranged("Refuse images with more pixels than this (decompression bombs).", RunOptions, "max_pixels"),
        ),
    ] = RUN.max_pixels,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite", help="Redo inputs whose output already exists (default: skip them, so reruns resume)."
        ),
    ] = RUN.overwrite,
    manifest: Annotated[
        str | None,
        typer.Option(
            "--manifest",
            help="Append one JSON line per input (status, error, outputs, size, box, foreground fraction, model, weights sha256). A URL manifest is written when the run ends.",
        ),
    ] = RUN.manifest,
    watch: Annotated[
        bool,
        typer.Option(
            "--watch",
            help="After the inputs (local folders), keep running and cut out each new or replaced file once it is completely written (its size unchanged for a second); Ctrl-C or SIGTERM ends it with the summary. File events from watchfiles (pip install 'bgcut[watch]'), else polling.",
        ),
    ] = False,
    watch_poll: Annotated[
        bool, typer.Option("--watch-poll", help="--watch by scanning the folders (network file systems: no events).")
    ] = False,
    max_doubt: Annotated[
        float | None,
        typer.Option(
            "--max-doubt",
            help=ranged(
                'Mark the rows whose doubt (0-1, from the mask alone: unsure, frame-touching, scattered or odd-sized foreground) is above this as "review": true in the manifest, and count them in the summary. Every row has its doubt.',
                RunOptions,
                "max_doubt",
            ),
        ),
    ] = RUN.max_doubt,
    shard: Annotated[
        str | None,
        typer.Option(
            "--shard",
            help="I/N: process only this job's share of the inputs (0 <= I < N), split by a hash of the output name, so N jobs (a Slurm/Kubernetes job array) cover every input exactly once. The manifest becomes NAME.shard-I-of-N.jsonl.",
        ),
    ] = None,
    engine: Annotated[
        str,
        typer.Option(
            "--engine",
            help="local (this machine: decode processes, one model) or ray (Ray Data: decode and write tasks, model actors, one per GPU; pip install 'bgcut[ray]').",
        ),
    ] = RUN.engine,
    ray_address: Annotated[
        str | None,
        typer.Option(
            "--ray-address",
            help="--engine ray: a cluster to join (auto, or ray://HOST:10001); default: start Ray on this machine.",
        ),
    ] = RUN.ray_address,
    ray_actors: Annotated[
        int,
        typer.Option(
            "--ray-actors",
            help=ranged(
                "--engine ray on a cluster without GPUs: model actors to run (with GPUs: one per GPU).",
                RunOptions,
                "ray_actors",
            ),
        ),
    ] = RUN.ray_actors,
    null: Annotated[
        bool,
        typer.Option("--null", "-0", help="Paths on stdin are separated by NUL bytes (find -print0), not newlines."),
    ] = False,
    quiet: QuietOpt = False,
) -> None:
    """Cut the background out of images: bgcut INPUT... -o OUT [--format FORMAT].

    INPUT is any mix of image files, video files (mp4, mov, webm, mkv, avi and animated GIFs:
    each becomes a --video-format output; pip install 'bgcut[video]'), folders (walked recursively; hidden files and the
    output folder are skipped; the tree is reproduced under OUT) and - (stdin: the bytes of
    one image, or paths one per line, or NUL-separated with -0); files, folders and OUT may be
    fsspec URLs (s3://, gs://, ...). Outputs are named after their input (photos/a/b.jpg ->
    OUT/a/b.png); when two inputs would share a name (a.jpg and a.png) both keep their full
    file name (a.jpg.png, a.png.png). Existing outputs are skipped, so a rerun resumes; a rerun
    with other settings into the same folder is refused unless --overwrite. With one input, OUT
    may be a file (cut.png, cut.webp, cut.jpg: the extension picks the format) or - (stdout).
    No output is ever written over an input.

    Exit status: 0 all inputs succeeded, 1 some failed (or the manifest could not be written,
    or the inputs held no image), 2 usage error (nothing was done), 130 interrupted (Ctrl-C),
    143 terminated (SIGTERM); an interrupted run prints its summary and a rerun resumes it.

    A first argument that is a command name (remove, models, train, eval, paste, serve, camera,
    review) runs that command: write a folder of that name as a path, e.g. ./train.

    Examples:

      bgcut ./photos -o ./out --format png-alpha

      bgcut photo.jpg -o photo-cut.png

      bgcut clip.mp4 -o out --video-format mp4 --bg '#00ff00'

      find . -name '*.jpg' -print0 | bgcut -0 - -o cutouts --format crop --margin 5%

      cat portrait.jpg | bgcut - -o - --format jpg --bg '#3366ff' > portrait-blue.jpg
    """
    if _decode_workers_likely(inputs, output, workers, engine):
        # Now, before this process imports torch: the fork server imports the decoder (and torch)
        # on the other core meanwhile, where it would otherwise start once the model is loaded,
        # with this process waiting for its first batch (bench/RESULTS.md, "Decode workers").
        from ..workers import worker_context

        worker_context()
    with imports_uncollected():
        from ..run import remove_backgrounds

    if output == "-" and sys.stdout.isatty():
        raise fail("refusing to write image bytes to a terminal: redirect stdout (> cut.png) or give -o FILE", 2)
    try:
        with reported_errors(), terminated_as_interrupt() as signalled, read_stdin("-" in inputs, null) as stdin:
            shard_spec = parse_shard(shard) if shard is not None else None
            run = RunOptions(
                model=model,
                weights=weights,
                device=device,
                precision=precision.value,
                size=size,
                batch_size=batch_size,
                workers=workers,
                max_pixels=max_pixels,
                overwrite=overwrite,
                manifest=manifest,
                max_doubt=max_doubt,
                shard=shard_spec,
                engine=engine,
                ray_address=ray_address,
                ray_actors=ray_actors,
            )
            fmt = format.value if format is not None else None  # None: the output name's, else the default
            out = OutputOptions(format=fmt, bg=bg, margin=margin, per_object=per_object, min_area=min_area, png=png)
            post = PostOptions(
                threshold=threshold,
                binary=binary,
                keep=keep.value,
                fill_holes=fill_holes,
                erode=erode,
                dilate=dilate,
                feather=feather,
                refine=refine.value,
                refine_eps=refine_eps,
                decontaminate=decontaminate,
            )
            video = VideoOptions(format=video_format.value, steady=steady, quality=video_quality)
            if watch or watch_poll:
                from ..watch import watch as watch_folders

                summary = watch_folders(
                    inputs, output, run, out, post, video=video, progress=False if quiet else None, poll=watch_poll
                )
                if not quiet:
                    typer.echo(summary.line().replace(" (interrupted)", "") + " (stopped watching)", err=True)
                raise typer.Exit(0 if summary.failed == 0 and summary.manifest_error is None else 1)
            summary = remove_backgrounds(
                inputs,
                output,
                run,
                out,
                post,
                video=video,
                stdin_lines=stdin.lines,
                stdin_image=stdin.image,
                progress=False if quiet else None,
            )
    except KeyboardInterrupt:  # before any image was started (listing, model loading)
        typer.echo("bgcut: interrupted", err=True)
        raise typer.Exit(interrupt_status(signalled)) from None
    if not quiet:
        typer.echo(summary.line(), err=True)
    if summary.interrupted:
        raise typer.Exit(interrupt_status(signalled))
    raise typer.Exit(0 if summary.ok else 1)


def _decode_workers_likely(inputs: list[str], output: str, workers: int, engine: str) -> bool:
    """Whether this run will most likely decode in worker processes: the local engine with
    workers, on more than one core, writing files, from a folder, a URL or more inputs than a
    batch. A guess before anything is listed; a wrong one costs a fork server nobody uses, and
    the engine still decides (``local_engine.process_photos``)."""
    if engine != "local" or workers <= 0 or output == "-" or (os.cpu_count() or 1) < 2:
        return False
    from ..storage import is_url  # a leaf, no torch

    return len(inputs) > 8 or any(is_url(i) or os.path.isdir(i) for i in inputs)
