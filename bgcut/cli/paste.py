"""``bgcut paste``: compose a synthetic detection/segmentation dataset from cut-outs."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from ..collector import imports_uncollected
from ..paste.options import COUNT, DEFAULT_WORKERS, WORKERS, PasteOptions
from ._common import QuietOpt, echo_err, fail, ranged, ranged_by, reported_errors


def _span(pair: tuple[float, float]) -> str:
    """A (MIN, MAX) default as the command line writes it: 1-5."""
    return f"{pair[0]}-{pair[1]}"


def paste_cli(
    cutouts: Annotated[
        list[str],
        typer.Argument(
            help="RGBA cut-outs: files or folders (bgcut --format crop output, or any RGBA PNGs). Subfolder names are class names.",
            show_default=False,
        ),
    ],
    backgrounds: Annotated[
        Path, typer.Option("--backgrounds", help="Folder of background photos.", exists=True, file_okay=False)
    ],
    output: Annotated[
        Path,
        typer.Option(
            "--output", "-o", help="Output folder: images/, records/, annotations.json (COCO), labels/ (YOLO)."
        ),
    ],
    count: Annotated[int, typer.Option("--count", "-n", help=ranged_by("Number of pictures to compose.", COUNT))],
    per_image: Annotated[str, typer.Option("--per-image", help="Objects per picture, MIN-MAX.")] = _span(
        PasteOptions.per_image
    ),
    scale: Annotated[
        str, typer.Option("--scale", help="Object size, MIN-MAX: its longer side over the picture's shorter side.")
    ] = _span(PasteOptions.scale),
    rotation: Annotated[
        float,
        typer.Option(
            "--rotation", help=ranged("Largest rotation in degrees (uniform in +-ROTATION).", PasteOptions, "rotation")
        ),
    ] = PasteOptions.rotation,
    flip: Annotated[
        bool, typer.Option("--flip/--no-flip", help="Mirror objects left-right half of the time.")
    ] = PasteOptions.flip,
    jitter: Annotated[
        float,
        typer.Option(
            "--jitter",
            help=ranged(
                "Colour jitter: brightness, contrast, saturation +-JITTER, hue +-JITTER/4 of a turn; 0 = off.",
                PasteOptions,
                "jitter",
            ),
        ),
    ] = PasteOptions.jitter,
    max_occlusion: Annotated[
        float,
        typer.Option(
            "--max-occlusion",
            help=ranged("Largest share of an object that later objects may cover.", PasteOptions, "max_occlusion"),
        ),
    ] = PasteOptions.max_occlusion,
    blend: Annotated[
        str,
        typer.Option(
            "--blend",
            help="Blending modes drawn per object, comma-separated: none, gaussian, poisson, motion (or all).",
        ),
    ] = "all",
    size: Annotated[
        str | None,
        typer.Option(
            "--size",
            help="Picture size WIDTHxHEIGHT (backgrounds are scaled to cover it and cropped); default: each background's own size.",
        ),
    ] = None,
    image_format: Annotated[str, typer.Option("--image-format", help="jpg or png.")] = PasteOptions.image_format,
    quality: Annotated[
        int, typer.Option("--quality", help=ranged("JPEG quality.", PasteOptions, "quality"))
    ] = PasteOptions.quality,
    min_area: Annotated[
        int,
        typer.Option(
            "--min-area",
            help=ranged(
                "Objects smaller than this many pixels after scaling are not pasted.", PasteOptions, "min_area"
            ),
        ),
    ] = PasteOptions.min_area,
    yolo: Annotated[
        bool, typer.Option("--yolo", help="Also write YOLO segmentation labels (labels/*.txt) and data.yaml.")
    ] = PasteOptions.yolo,
    classes: Annotated[
        Path | None,
        typer.Option(
            "--classes",
            help='JSON file of {"fnmatch pattern": "class name"} for cut-outs, first match wins (else the subfolder or folder name).',
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    seed: Annotated[
        int, typer.Option("--seed", help="Same seed, inputs and options: byte-identical output.")
    ] = PasteOptions.seed,
    workers: Annotated[
        int,
        typer.Option("--workers", "-j", help=ranged_by("Worker processes (0 = compose in this process).", WORKERS)),
    ] = DEFAULT_WORKERS,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Start again: remove earlier pictures in OUTPUT instead of resuming.")
    ] = False,
    decontaminate: Annotated[
        bool,
        typer.Option(
            "--decontaminate/--no-decontaminate",
            help="Estimate each cut-out's own colour where its alpha is partial, so the background it was cut from does not show as a halo.",
        ),
    ] = PasteOptions.decontaminate,
    quiet: QuietOpt = False,
    progress: Annotated[
        bool | None, typer.Option("--progress/--no-progress", hidden=True, help="Deprecated: see --quiet.")
    ] = None,
) -> None:
    """Paste cut-outs onto backgrounds: images with COCO (and YOLO) instance annotations.

    Each picture gets MIN-MAX objects, scaled, rotated, flipped, colour-jittered and placed at
    random, with at most --max-occlusion of each hidden by later ones. Annotations are the
    visible part of each object's mask (alpha >= 50%), exactly. Reruns resume: finished
    pictures are skipped, and a larger -n adds pictures.

    Example: bgcut paste crops/ --backgrounds bg/ -o synth -n 1000 --size 1024x768 --yolo
    """
    with imports_uncollected():
        from ..paste import paste_dataset
        from ..paste.options import parse_blends, parse_range, parse_size
        from ..paste.sources import load_classes

    with reported_errors():
        options = PasteOptions(
            seed=seed,
            per_image=parse_range(per_image, int, "--per-image"),
            scale=parse_range(scale, float, "--scale"),
            rotation=rotation,
            flip=flip,
            jitter=jitter,
            max_occlusion=max_occlusion,
            blends=parse_blends(blend),
            size=parse_size(size) if size else None,
            image_format=image_format.lower().lstrip(".").replace("jpeg", "jpg"),
            quality=quality,
            min_area=min_area,
            yolo=yolo,
            classes=load_classes(classes) if classes else {},
            decontaminate=decontaminate,
        )
        summary = paste_dataset(
            cutouts,
            str(backgrounds),
            output,
            count,
            options,
            workers=workers,
            overwrite=overwrite,
            # As in `bgcut remove`: a bar when stderr is a terminal, unless --quiet.
            progress=progress if progress is not None else not quiet and sys.stderr.isatty(),
            on_error=lambda line: echo_err(f"bgcut: error: {line}"),
            on_warning=lambda line: echo_err(f"bgcut: warning: {line}"),
        )
    if not quiet:
        echo_err(summary.line())
    if summary.interrupted:
        raise typer.Exit(130)
    if summary.annotations is not None and not quiet:
        echo_err(f"bgcut paste: annotations in {summary.annotations}")
    if not summary.ok:
        raise fail(f"{len(summary.bad_inputs)} input(s) could not be read, {summary.failed} picture(s) not made")
