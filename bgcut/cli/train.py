"""``bgcut train``: fit an architecture on image/mask pairs and export safetensors + config."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ..collector import imports_uncollected
from ..config import DEFAULT_MODEL
from ..errors import UsageError
from ..train.options import TrainConfig
from ._common import DeviceOpt, ranged, reported_errors


def train_cli(
    images: Annotated[
        Path,
        typer.Option(
            "--images",
            help="Folder of training images (with --coco: the pictures' folder).",
            exists=True,
            file_okay=False,
        ),
    ],
    output: Annotated[
        Path,
        typer.Option("--output", "-o", help="Folder for checkpoints and the exported model.safetensors + config.json."),
    ],
    masks: Annotated[
        Path | None,
        typer.Option(
            "--masks", help="Folder of masks with the images' stems (255 = foreground).", exists=True, file_okay=False
        ),
    ] = None,
    coco: Annotated[
        Path | None,
        typer.Option(
            "--coco",
            help="A COCO instances JSON: train on its annotations instead of --masks.",
            exists=True,
            dir_okay=False,
        ),
    ] = TrainConfig.coco,
    coco_mode: Annotated[
        str,
        typer.Option(
            "--coco-mode", help="instances: a crop and mask per object; classes: per picture, the union of the classes."
        ),
    ] = TrainConfig.coco_mode,
    coco_classes: Annotated[
        str | None, typer.Option("--coco-classes", help="Comma-separated category names or ids to keep (default: all).")
    ] = None,
    coco_min_area: Annotated[
        float,
        typer.Option(
            "--coco-min-area",
            help=ranged("Skip objects smaller than this many pixels (instances).", TrainConfig, "coco_min_area"),
        ),
    ] = TrainConfig.coco_min_area,
    coco_context: Annotated[
        float,
        typer.Option(
            "--coco-context",
            help=ranged("Widen each object's box by this share of its size per side.", TrainConfig, "coco_context"),
        ),
    ] = TrainConfig.coco_context,
    backgrounds: Annotated[
        Path | None,
        typer.Option(
            "--backgrounds",
            help="Folder of photos to paste the masked objects onto (cut-and-paste augmentation).",
            exists=True,
            file_okay=False,
        ),
    ] = TrainConfig.backgrounds,
    paste: Annotated[
        float,
        typer.Option(
            "--paste",
            help=ranged("Share of samples pasted onto a background.", TrainConfig, "paste"),
        ),
    ] = TrainConfig.paste,
    blur: Annotated[
        float,
        typer.Option(
            "--blur",
            help=ranged("Share of samples Gaussian-blurred.", TrainConfig, "blur"),
        ),
    ] = TrainConfig.blur,
    jpeg: Annotated[
        float,
        typer.Option(
            "--jpeg",
            help=ranged("Share of samples re-encoded as JPEG (quality 30-90).", TrainConfig, "jpeg"),
        ),
    ] = TrainConfig.jpeg,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            help=f"The registry entry whose architecture and input contract are trained (default: {TrainConfig.model}).",
        ),
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", help="Name written into config.json (default: the model's).")
    ] = TrainConfig.name,
    epochs: Annotated[
        int, typer.Option("--epochs", help=ranged("Passes over the training pairs.", TrainConfig, "epochs"))
    ] = TrainConfig.epochs,
    batch_size: Annotated[
        int, typer.Option("--batch-size", "-b", help=ranged("Images per step.", TrainConfig, "batch_size"))
    ] = TrainConfig.batch_size,
    size: Annotated[
        int,
        typer.Option(
            "--size",
            help=ranged("Training crop size in pixels.", TrainConfig, "size"),
        ),
    ] = TrainConfig.size,
    lr: Annotated[
        float,
        typer.Option(
            "--lr",
            help=ranged("Peak learning rate (AdamW, warm-up then cosine).", TrainConfig, "lr"),
        ),
    ] = TrainConfig.lr,
    val_fraction: Annotated[
        float,
        typer.Option(
            "--val-fraction",
            help=ranged("Share of pairs held out (chosen by a hash of the file name).", TrainConfig, "val_fraction"),
        ),
    ] = TrainConfig.val_fraction,
    seed: Annotated[int, typer.Option("--seed")] = TrainConfig.seed,
    workers: Annotated[
        int,
        typer.Option("--workers", "-j", help=ranged("Decode processes (0 = in this process).", TrainConfig, "workers")),
    ] = TrainConfig.workers,
    device: DeviceOpt = TrainConfig.device,
    max_minutes: Annotated[
        float | None,
        typer.Option("--max-minutes", help="Stop after this much training time and export the best epoch so far."),
    ] = TrainConfig.max_minutes,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from OUTPUT/last.pt.")] = TrainConfig.resume,
    limit: Annotated[
        int | None, typer.Option("--limit", help="Use only the first N pairs (smoke tests).")
    ] = TrainConfig.limit,
    resume_from: Annotated[
        Path | None,
        typer.Option(
            "--resume-from",
            help="Go on from a run's state.safetensors (committed, or from another machine): its weights, epoch and step; the optimiser starts afresh. OUTPUT/last.pt wins when --resume finds it.",
            exists=True,
            dir_okay=False,
        ),
    ] = TrainConfig.resume_from,
    init: Annotated[
        Path | None,
        typer.Option(
            "--init",
            help="Start from these weights (.safetensors/.pth) instead of random: fine-tuning or a warm restart.",
        ),
    ] = TrainConfig.init,
    init_encoder: Annotated[
        Path | None,
        typer.Option(
            "--init-encoder",
            help="Start the encoder from these ImageNet weights (bgcut-s: an efficientnet_pytorch EfficientNet-Lite0 .pth); the decoder starts random.",
            exists=True,
            dir_okay=False,
        ),
    ] = TrainConfig.init_encoder,
    arch_args: Annotated[
        str | None,
        typer.Option(
            "--arch-args", help="The architecture's arguments as JSON, over the model's own, e.g. '{\"width\": 0.25}'."
        ),
    ] = None,
    cache_dir: Annotated[
        Path | None,
        typer.Option(
            "--cache-dir",
            help="Keep the decoded pairs in memory-mapped files here: runs on one machine share one copy, and a resumed run does not decode again.",
            file_okay=False,
        ),
    ] = TrainConfig.cache_dir,
    max_cpu_minutes: Annotated[
        float | None,
        typer.Option(
            "--max-cpu-minutes",
            help="Stop after this much CPU time of training (all threads), e.g. to give runs that share a machine equal budgets.",
        ),
    ] = TrainConfig.max_cpu_minutes,
    ema: Annotated[
        float,
        typer.Option(
            "--ema",
            help=ranged(
                "Validate and export a moving average of the weights with this decay (e.g. 0.999); 0 = off.",
                TrainConfig,
                "ema",
            ),
        ),
    ] = TrainConfig.ema,
    teacher: Annotated[
        str | None,
        typer.Option(
            "--teacher",
            help=f"Distil from this model's soft masks (a registry name such as {DEFAULT_MODEL}, the default model, or a weights folder); computed once, cached in OUTPUT/teacher/.",
        ),
    ] = TrainConfig.teacher,
    distill_weight: Annotated[
        float,
        typer.Option(
            "--distill-weight",
            help=ranged("Weight of the teacher term beside the ground truth.", TrainConfig, "distill_weight"),
        ),
    ] = TrainConfig.distill_weight,
    boundary_gain: Annotated[
        float,
        typer.Option(
            "--boundary-gain",
            help=ranged(
                "Extra BCE weight within 3 px of mask edges (e.g. 4); 0 = plain BCE.", TrainConfig, "boundary_gain"
            ),
        ),
    ] = TrainConfig.boundary_gain,
) -> None:
    """Train a bgcut architecture on image/mask pairs.

    Pairs (image/mask folders, or COCO annotations with --coco) are decoded once into
    memory; each step applies random resized crops, flips, pasting onto --backgrounds,
    colour jitter, blur and JPEG artefacts; the loss is BCE + IoU with deep supervision. Every epoch is
    validated (MAE, maxF, IoU, S-measure) and checkpointed to OUTPUT/last.pt; the best
    epoch is exported as OUTPUT/model.safetensors + OUTPUT/config.json, usable with
    `bgcut --weights OUTPUT`.

    Example: bgcut train --images duts-tr/images --masks duts-tr/masks -o runs/lite --epochs 16
    """
    with imports_uncollected():
        from ..train import train

    with reported_errors():
        parsed_arch_args = _arch_args(arch_args)
    with reported_errors():  # the options' own checks (TrainConfig) are one line too
        cfg = TrainConfig(
            images=images,
            masks=masks,
            output=output,
            model=model or TrainConfig.model,
            name=name,
            size=size,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            val_fraction=val_fraction,
            seed=seed,
            workers=workers,
            device=device,
            max_minutes=max_minutes,
            resume=resume,
            limit=limit,
            init=init,
            resume_from=resume_from,
            init_encoder=init_encoder,
            max_cpu_minutes=max_cpu_minutes,
            cache_dir=cache_dir,
            arch_args=parsed_arch_args,
            ema=ema,
            boundary_gain=boundary_gain,
            teacher=teacher,
            distill_weight=distill_weight,
            blur=blur,
            jpeg=jpeg,
            backgrounds=backgrounds,
            paste=paste,
            coco=coco,
            coco_mode=coco_mode,
            coco_classes=[c.strip() for c in coco_classes.split(",") if c.strip()] if coco_classes else None,
            coco_min_area=coco_min_area,
            coco_context=coco_context,
        )
        path = train(cfg, log=lambda m: typer.echo(m, err=True))
    typer.echo(f"exported {path}")


def _arch_args(text: str | None) -> dict:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise UsageError(f"--arch-args: not valid JSON ({e})") from None
    if not isinstance(value, dict):
        raise UsageError(f"--arch-args: expected a JSON object such as '{{\"width\": 0.25}}', got {text!r}")
    return value
