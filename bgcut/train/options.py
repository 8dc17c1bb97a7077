"""``TrainConfig``: one training run's options, checked once; the command's defaults are its own.

Imported by the CLI without torch (``bgcut.train`` loads the training loop only when it is used).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..config import FAST_MODEL, MIN_SIZE
from ..errors import UsageError

COCO_MODES = ("instances", "classes")  # bgcut train --coco-mode


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
    size: int = 256
    epochs: int = 10
    batch_size: int = 16
    lr: float = 2e-3
    weight_decay: float = 1e-4
    val_fraction: float = 0.1
    seed: int = 0
    workers: int = 2
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
    ema: float = 0.0  # decay of the weights' moving average that is validated and exported; 0 = off
    boundary_gain: float = 0.0  # extra BCE weight within 3 px of mask edges; 0 = plain BCE
    teacher: str | None = None  # distil from this model's soft masks (a registry name or a weights folder)
    distill_weight: float = 1.0  # weight of the teacher term beside the ground-truth loss
    blur: float = 0.2  # probability of a Gaussian blur per sample
    jpeg: float = 0.2  # probability of a JPEG round trip per sample
    backgrounds: Path | None = None  # photos to paste objects onto (cut-and-paste augmentation)
    paste: float = 0.5  # probability of pasting, when there are backgrounds
    coco: Path | None = None  # a COCO instances file: pairs from its annotations instead of --masks
    coco_mode: str = "instances"  # "instances" (a crop per object) or "classes" (a mask per picture)
    coco_classes: list[str] | None = None  # category names or ids to keep; None = all
    coco_min_area: float = 1024.0  # objects smaller than this many pixels are skipped (instances)
    coco_context: float = 0.15  # an object's crop: its box widened by this share of its size per side
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
        if self.size < MIN_SIZE:
            raise UsageError(f"--size {self.size}: must be at least {MIN_SIZE} pixels")
        for flag, value, least in (("--epochs", self.epochs, 1), ("--batch-size", self.batch_size, 1),
                                   ("--workers", self.workers, 0)):  # fmt: skip
            if value < least:
                raise UsageError(f"{flag} {value}: must be at least {least}")
        if not self.lr > 0:  # also refuses nan
            raise UsageError(f"--lr {self.lr}: must be above 0")
        if not 0.0 <= self.val_fraction <= 0.9:
            raise UsageError(f"--val-fraction {self.val_fraction}: must be from 0 to 0.9")
        if not 0.0 <= self.ema < 1.0:
            raise UsageError(f"--ema {self.ema}: must be from 0 (off) up to, not including, 1")
        for flag, share in (("--blur", self.blur), ("--jpeg", self.jpeg), ("--paste", self.paste)):
            if not 0.0 <= share <= 1.0:
                raise UsageError(f"{flag} {share}: must be a share from 0 to 1")
        weights = {"--boundary-gain": self.boundary_gain, "--distill-weight": self.distill_weight}
        coco = {"--coco-min-area": self.coco_min_area, "--coco-context": self.coco_context}
        for flag, value in {**weights, **coco}.items():
            if not value >= 0:
                raise UsageError(f"{flag} {value}: must not be negative")
