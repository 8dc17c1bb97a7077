"""The parsers that turn `bgcut paste`'s strings into ``PasteOptions`` (which lives in ``bgcut.config``)."""

from __future__ import annotations

import re

from ..config import BLENDS, IMAGE_FORMATS, PasteOptions
from ..errors import UsageError

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
