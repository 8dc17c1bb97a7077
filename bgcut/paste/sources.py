"""The inputs of a paste run: cut-outs with their class names, and background photos.

A cut-out's class is, in this order: the first ``--classes`` pattern that matches its path
relative to the folder it was found in; else its first subfolder under that folder
(``cutouts/dog/a.png`` -> ``dog``); else the name of the folder it lies in.
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ImageError, UsageError
from ..images import open_named
from ..pipeline.reader import list_sources


@dataclass(frozen=True)
class Cutout:
    path: Path
    name: str  # path relative to the folder it was found in, "/"-separated, with extension
    category: str


def load_classes(path: str | Path) -> dict[str, str]:
    """A ``--classes`` file: a JSON object mapping fnmatch patterns to class names."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise UsageError(f"{path}: cannot read the --classes file: {e.strerror}") from None
    except json.JSONDecodeError as e:
        raise UsageError(f"{path}: not valid JSON: {e.msg} (line {e.lineno})") from None
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise UsageError(f'{path}: expected a JSON object of "pattern": "class name" pairs')
    return dict(data)


def _category(name: str, root_name: str, classes: dict[str, str]) -> str:
    for pattern, category in classes.items():
        if fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(Path(name).name, pattern):
            return category
    return name.split("/", 1)[0] if "/" in name else root_name


def list_cutouts(inputs: list[str], classes: dict[str, str] | None = None) -> tuple[list[Cutout], list[str]]:
    """Cut-outs in a stable order (arguments in order, then by name), and listing errors."""
    classes = classes or {}
    cutouts: list[Cutout] = []
    errors: list[str] = []
    for arg in inputs:
        listing = list_sources([arg])
        errors.extend(f"{where}: {why}" for where, why in listing.errors)
        path = Path(arg)
        root = path.resolve() if path.is_dir() else path.resolve().parent
        for src in listing.sources:
            file = Path(src.path)
            name = src.key + file.suffix if path.is_dir() else file.name
            cutouts.append(Cutout(file, name, _category(name, root.name, classes)))
    return cutouts, errors


CUTOUT_HINT = "make cut-outs with `bgcut PHOTOS -o CUTOUTS --format crop` (or --format png-alpha)"


def _has_alpha(path: Path) -> bool | None:
    """Whether the file's header declares transparency; None when it cannot be read (that is
    reported, by name, when the cut-out is loaded)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info
    except (OSError, ValueError, SyntaxError):
        return None


def with_alpha(cutouts: list[Cutout]) -> tuple[list[Cutout], list[str]]:
    """The cut-outs that have an alpha channel, and one line for each that has none.

    A photo without transparency pasted as a cut-out would be a full rectangle, or (as before
    this check) nothing at all: pictures with no annotations, reported as made.
    """
    kept, refused = [], []
    for c in cutouts:
        if _has_alpha(c.path) is False:
            refused.append(f"{c.path}: no alpha channel, so nothing to cut by: {CUTOUT_HINT}")
        else:
            kept.append(c)
    return kept, refused


def list_backgrounds(folder: str) -> tuple[list[Path], list[str]]:
    listing = list_sources([folder])
    return [Path(s.path) for s in listing.sources], [f"{where}: {why}" for where, why in listing.errors]


def load_cutout(path: Path) -> np.ndarray:
    """RGBA uint8, cropped to its opaque part. Refuses images with no transparency to cut by."""
    decoded = open_named(path)
    if decoded.alpha is None:
        raise ImageError(f"{path}: no alpha channel, so nothing to cut by: {CUTOUT_HINT}")
    ys, xs = np.nonzero(decoded.alpha >= 128)
    if ys.size == 0:
        raise ImageError(f"{path}: fully transparent: nothing to paste")
    box = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
    return np.ascontiguousarray(np.dstack([decoded.rgb[box], decoded.alpha[box]]))


def load_background(path: Path) -> np.ndarray:
    return open_named(path).rgb
