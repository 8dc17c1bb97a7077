"""``bgcut paste``'s options (``PasteOptions``) and the parsers that turn its strings into them."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

from ..config import Bounds, bounded, check_bounds
from ..errors import UsageError

BLENDS = ("none", "gaussian", "poisson", "motion")
IMAGE_FORMATS = ("jpg", "png")


# ``paste_dataset``'s own arguments, not options of a picture: their ranges, for its check and the help.
COUNT = Bounds(1)  # pictures to compose
WORKERS = Bounds(0)  # composer processes; 0 composes in the calling process
DEFAULT_WORKERS = 2


@dataclass(frozen=True)
class PasteOptions:
    """How each picture is composed. Everything random is drawn from ``seed`` and the picture's index.

    Two runs with equal options, cut-outs and backgrounds write byte-identical files, whatever
    the number of worker processes: each picture has its own random stream.
    """

    seed: int = 0
    per_image: tuple[int, int] = (1, 5)  # objects per picture, inclusive
    scale: tuple[float, float] = (0.2, 0.6)  # object's longer side / background's shorter side
    rotation: float = bounded(20.0, Bounds(0))  # degrees, uniform in [-rotation, rotation]
    flip: bool = True  # horizontal flip with probability 1/2
    # Colour jitter strength: brightness, contrast, saturation +-jitter, hue +-jitter/4 of a turn.
    jitter: float = bounded(0.2, Bounds(0))
    max_occlusion: float = bounded(0.5, Bounds(0, 1))  # largest share of an object that later objects may cover
    blends: tuple[str, ...] = BLENDS  # one is drawn per object
    size: tuple[int, int] | None = None  # (width, height) of the pictures; None keeps each background's size
    image_format: str = "jpg"
    quality: int = bounded(95, Bounds(1, 100))  # JPEG quality
    min_area: int = bounded(64, Bounds(1))  # objects smaller than this (pixels, after scaling) are not pasted
    placement_tries: int = 30
    feather: float = 2.0  # sigma in pixels of the "gaussian" blend
    motion: tuple[int, int] = (5, 15)  # kernel length range in pixels of the "motion" blend
    yolo: bool = False
    classes: dict[str, str] = field(default_factory=dict)
    # Estimate each cut-out's own colour where its alpha is partial (pipeline/edges.py), so the
    # background it was cut from does not come along as a halo.
    decontaminate: bool = False  # fnmatch pattern -> class name, first match wins

    def __post_init__(self) -> None:
        lo, hi = self.per_image
        if not 0 <= lo <= hi:
            raise UsageError(f"--per-image: need 0 <= MIN <= MAX, got {lo}-{hi}")
        slo, shi = self.scale
        if not 0 < slo <= shi <= 1:
            raise UsageError(f"--scale: need 0 < MIN <= MAX <= 1, got {slo}-{shi}")
        if not self.blends:
            raise UsageError("--blend: name at least one of " + ", ".join(BLENDS))
        for b in self.blends:
            if b not in BLENDS:
                raise UsageError(f"--blend: unknown mode {b!r}; choose from " + ", ".join(BLENDS))
        if self.image_format not in IMAGE_FORMATS:
            raise UsageError(f"--image-format must be one of {', '.join(IMAGE_FORMATS)}, got {self.image_format!r}")
        check_bounds(self)
        if self.size is not None and min(self.size) < 16:
            raise UsageError(f"--size: pictures must be at least 16x16, got {self.size[0]}x{self.size[1]}")

    def fingerprint(self) -> dict:
        """What decides the pictures: a rerun into the same folder must agree on all of it."""
        d = asdict(self)
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}


__all__ = ["BLENDS", "IMAGE_FORMATS", "PasteOptions", "parse_blends", "parse_range", "parse_size"]


def parse_range(text: str, kind: type, what: str) -> tuple:
    """``"2-5"`` -> (2, 5); ``"3"`` -> (3, 3). Works for ints and floats."""
    m = re.fullmatch(r"\s*([0-9.]+)\s*(?:-\s*([0-9.]+)\s*)?", text)
    if not m:
        raise UsageError(f"{what}: expected MIN-MAX or a single number, got {text!r}")
    try:
        lo = kind(m.group(1))
        hi = kind(m.group(2)) if m.group(2) is not None else lo
    except ValueError:
        raise UsageError(f"{what}: expected MIN-MAX or a single number, got {text!r}") from None
    return lo, hi


def parse_size(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not m:
        raise UsageError(f"--size: expected WIDTHxHEIGHT such as 1024x768, got {text!r}")
    return int(m.group(1)), int(m.group(2))


def parse_blends(text: str) -> tuple[str, ...]:
    names = tuple(b.strip() for b in text.split(",") if b.strip())
    if text.strip() == "all":
        return BLENDS
    return names
