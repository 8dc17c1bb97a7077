"""``bgcut camera``: live cut-out from a camera, or a video file read the same way."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..collector import imports_uncollected
from ..config import MAX_FRAMES, PostOptions, RunOptions, VideoOptions
from ._common import DeviceOpt, ModelOpt, SizeOpt, WeightsOpt, ranged, ranged_by, reported_errors

RUN, POST, VIDEO = RunOptions(), PostOptions(), VideoOptions()


def camera_cli(
    source: Annotated[
        str, typer.Argument(help="A camera's index (0 is the first) or a video file read as if it were one.")
    ] = "0",
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="Also write the cut-out: FILE.webm or FILE.mov (transparent), FILE.mp4 (on --bg)."
        ),
    ] = None,
    bg: Annotated[
        str | None,
        typer.Option("--bg", help="Show (and write) on this colour or photo; default: a checkerboard on screen."),
    ] = None,
    window: Annotated[
        bool, typer.Option("--window/--no-window", help="Show the preview window (q or Esc closes it).")
    ] = True,
    max_frames: Annotated[
        int | None, typer.Option("--max-frames", help=ranged_by("Stop after this many frames.", MAX_FRAMES))
    ] = None,
    steady: Annotated[
        float,
        typer.Option(
            "--steady",
            help=ranged("Steady the mask across frames, 0 is off (see bgcut remove).", VideoOptions, "steady"),
        ),
    ] = VIDEO.steady,
    model: ModelOpt = RUN.model,
    weights: WeightsOpt = RUN.weights,
    device: DeviceOpt = RUN.device,
    size: SizeOpt = RUN.size,
) -> None:
    """Cut out a camera's frames live and show them on --bg with the frame rate.

    Examples: bgcut camera (the first camera, in a window); bgcut camera 0 --bg '#00b140' -o take.mp4;
    bgcut camera clip.mp4 --no-window -o cut.webm
    """
    with reported_errors():
        with imports_uncollected():
            from ..pipeline.infer import Predictor
            from ..pipeline.target import load_background
            from ..video.camera import run_camera

        post = PostOptions(threshold=POST.threshold)
        opts = VideoOptions(steady=steady)
        background = load_background(bg) if bg else None
        predictor = Predictor.from_options(
            RunOptions(model=model, weights=weights, device=device, size=size), pad=False
        )
        summary = run_camera(
            source, predictor, post, background, output=output, window=window, max_frames=max_frames, steady=opts.steady
        )
    where = f", written to {summary.output}" if summary.output and summary.frames else ""
    typer.echo(
        f"bgcut camera: {summary.frames} frames in {summary.seconds:.1f}s ({summary.fps:.1f} fps){where}", err=True
    )
    raise typer.Exit(0 if summary.frames else 1)
