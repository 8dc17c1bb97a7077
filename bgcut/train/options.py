"""``TrainConfig``: one training run's options, checked once; the command's defaults are its own.

Imported by the CLI without torch (``bgcut.train`` loads the training loop only when it is used).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..config import FAST_MODEL, MIN_SIZE, Bounds, bounded, check_bounds
from ..errors import UsageError

COCO_MODES = ("instances", "classes")  # bgcut train --coco-mode
_SHARE = Bounds(0.0, 1.0)  # a probability per sample
_WEIGHT = Bounds(0.0)


@dataclass(frozen=True)
class TrainConfig:
    """One training run (``bgcut train``); the command's defaults are these, and every check of
    the options alone (no file read yet) is made once, here."""

    images: Path
    masks: Path | None
    output: Path
    # Registry entry whose architecture and input contract are trained: a student, not the default
    # (a 44M-parameter IS-Net is the teacher, --teacher isnet-general).
    model: str = FAST_MODEL
    name: str | None = None  # name written into config.json (defaults to ``model``)
    size: int = bounded(256, Bounds(MIN_SIZE, unit=" pixels"))
    epochs: int = bounded(10, Bounds(1))
    batch_size: int = bounded(16, Bounds(1))
    lr: float = bounded(2e-3, Bounds(0.0, low_open=True))
    weight_decay: float = 1e-4
    val_fraction: float = bounded(0.1, Bounds(0.0, 0.9))
    seed: int = 0
    workers: int = bounded(2, Bounds(0))
    device: str = "auto"
    max_minutes: float | None = None
    resume: bool = False
    limit: int | None = None  # use only the first N pairs (smoke tests)
    init: Path | None = None  # start from these weights (fine-tuning, warm restarts) instead of random
    # Go on from a run's state.safetensors (another machine's, committed): its weights, epoch and
    # step, so the schedule continues where --init would start it again. OUTPUT/last.pt wins with --resume.
    resume_from: Path | None = None
    # ImageNet weights for the architecture's encoder only (an arch with ``encoder_state_from``)
    init_encoder: Path | None = None
    # Stop after this much CPU time of the training process (all its threads): the budget two runs
    # that share a machine, or are starved by other work, can be compared by.
    max_cpu_minutes: float | None = None
    # Keep the decoded pairs in memory-mapped files here: runs on one machine share one copy,
    # and a resumed run does not decode again. None: in this process's memory.
    cache_dir: Path | None = None
    # The decay of the weights' moving average that is validated and exported; 0 = off.
    ema: float = bounded(0.0, Bounds(0.0, 1.0, high_open=True, why="0 is off"))
    boundary_gain: float = bounded(0.0, _WEIGHT)  # extra BCE weight within 3 px of mask edges; 0 = plain BCE
    teacher: str | None = None  # distil from this model's soft masks (a registry name or a weights folder)
    distill_weight: float = bounded(1.0, _WEIGHT)  # weight of the teacher term beside the ground-truth loss
    blur: float = bounded(0.2, _SHARE)  # probability of a Gaussian blur per sample
    jpeg: float = bounded(0.2, _SHARE)  # probability of a JPEG round trip per sample
    backgrounds: Path | None = None  # photos to paste objects onto (cut-and-paste augmentation)
    paste: float = bounded(0.5, _SHARE)  # probability of pasting, when there are backgrounds
    coco: Path | None = None  # a COCO instances file: pairs from its annotations instead of --masks
    coco_mode: str = "instances"  # "instances" (a crop per object) or "classes" (a mask per picture)
    coco_classes: list[str] | None = None  # category names or ids to keep; None = all
    coco_min_area: float = bounded(1024.0, _WEIGHT)  # objects smaller than this many pixels are skipped (instances)
    coco_context: float = bounded(0.15, _WEIGHT)  # an object's crop: its box widened by this share of its size per side
    arch_args: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (self.masks is None) == (self.coco is None):
            raise UsageError("give either --masks (image/mask pairs) or --coco (a COCO instances file)")
        if self.teacher and self.coco is not None:
            # A teacher predicts salient objects, not one COCO object or class: no target to distil.
            raise UsageError("--teacher works with --masks pairs, not with --coco")
        if self.resume_from is not None and (self.init is not None or self.init_encoder is not None):
            raise UsageError("--resume-from goes on from a state file's weights: leave out --init and --init-encoder")
        if self.coco_mode not in COCO_MODES:
            raise UsageError(f"--coco-mode {self.coco_mode!r}: expected one of {', '.join(COCO_MODES)}")
        check_bounds(self)
