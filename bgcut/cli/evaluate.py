"""``bgcut eval``: a model's quality on a labelled folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ..collector import imports_uncollected
from ..config import PostOptions, RunOptions
from ._common import (
    DeviceOpt,
    ModelOpt,
    Precision,
    PrecisionOpt,
    Refine,
    RefineEpsOpt,
    RefineOpt,
    SizeOpt,
    WeightsOpt,
    WorkersOpt,
    ranged,
    reported_errors,
)

RUN, POST = RunOptions(), PostOptions()  # the defaults of `bgcut remove`: eval scores what users get


def eval_cli(
    images: Annotated[Path, typer.Option("--images", help="Folder of images.", exists=True, file_okay=False)],
    masks: Annotated[
        Path,
        typer.Option(
            "--masks",
            help="Folder of ground-truth masks (PNG, same stem as the image, 255 = foreground).",
            exists=True,
            file_okay=False,
        ),
    ],
    model: ModelOpt = RUN.model,
    weights: WeightsOpt = RUN.weights,
    size: SizeOpt = RUN.size,
    device: DeviceOpt = RUN.device,
    precision: PrecisionOpt = Precision(RUN.precision),
    batch_size: Annotated[
        int | None,
        typer.Option(
            "--batch-size",
            "-b",
            help=ranged("Images per forward pass (default: as `bgcut remove`).", RunOptions, "batch_size"),
        ),
    ] = RUN.batch_size,
    workers: WorkersOpt = RUN.workers,
    save_masks: Annotated[
        Path | None,
        typer.Option("--save-masks", help="Keep the predicted masks here (to cross-check with other scorers)."),
    ] = None,
    refine: RefineOpt = Refine(POST.refine),
    refine_eps: RefineEpsOpt = POST.refine_eps,
    colour: Annotated[
        Path | None,
        typer.Option(
            "--colour",
            help="Also score foreground colour estimation: composites of the labelled pictures on these background photos (see bgcut.evaluate.evaluate_colour).",
            exists=True,
            file_okay=False,
        ),
    ] = None,
    allow_missing: Annotated[
        bool,
        typer.Option(
            "--allow-missing",
            help="Score ground-truth masks that have no prediction (no image of that stem, or it failed) as empty masks, instead of failing.",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of a line.")] = False,
) -> None:
    """Score a model on a labelled folder: MAE, maxF (beta^2 = 0.3), mean IoU at 0.5, S-measure.

    The images go through the same pipeline as `bgcut INPUT --format mask` (no
    post-processing), and the 8-bit masks are scored against the ground truth of the same
    file stem. A ground-truth mask with no prediction is an error, unless --allow-missing
    scores it as an empty mask.

    Example: bgcut eval --images data/davis16/images --masks data/davis16/masks --json
    """
    with imports_uncollected():
        from ..evaluate import evaluate, evaluate_colour

    with reported_errors():
        post = PostOptions(refine=refine.value, refine_eps=refine_eps)
        colour_result = evaluate_colour(images, masks, colour) if colour is not None else None
        result = evaluate(
            images,
            masks,
            model=model,
            weights=None if weights is None else str(weights),
            save_masks=save_masks,
            size=size,
            device=device,
            precision=precision.value,
            batch_size=batch_size,
            workers=workers,
            post=post,
            allow_missing=allow_missing,
        )
    if as_json:
        from ..models import resolve_cfg  # torch: only once the command runs, not for --help

        data = {
            "model": str(weights) if weights else resolve_cfg(model).name,
            "refine": refine.value,
            "precision": precision.value,
            **result.to_dict(),
        }
        if colour_result is not None:
            data["colour"] = colour_result.to_dict()
        typer.echo(json.dumps(data))
    else:
        typer.echo(result.line())
        if colour_result is not None:
            typer.echo(colour_result.line())
