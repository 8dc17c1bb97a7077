"""COCO instance annotations as training pairs for ``bgcut train --coco``.

Two ways to turn a COCO file into image/mask pairs:

- ``instances``: one pair per object: the object's box widened by ``context`` on every
  side (so the network sees some background), its own mask as the target. Other objects in
  the crop are background, as a cut-out tool treats them. Crowd regions and objects smaller
  than ``min_area`` pixels are skipped.
- ``classes``: one pair per picture: the whole picture, the union of the masks of the chosen
  classes (crowd regions included: a crowd of people is still people) as the target.
  Pictures with none of those classes are skipped.

Masks are decoded with pycocotools (polygons, RLE and compressed RLE alike). The held-out
split is drawn by picture, never by object, so no picture is both trained and validated on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from ..errors import UsageError
from ..images import open_named, resize_rgb
from .options import COCO_MODES


@dataclass(frozen=True)
class CocoSample:
    image: Path
    width: int  # the picture's size as the annotation file records it
    height: int
    segmentations: tuple  # one (instances) or several (classes) COCO segmentations
    box: tuple[int, int, int, int] | None  # crop x0, y0, x1, y1; None = the whole picture

    @property
    def stem(self) -> str:
        """What the validation split is drawn by: the picture, so its objects stay together."""
        return self.image.stem


def _category_ids(categories: list[dict], wanted: list[str] | None, source: Path) -> set[int]:
    by_name = {str(c["name"]): int(c["id"]) for c in categories}
    if not wanted:
        return set(by_name.values())
    ids = set()
    for w in wanted:
        if w in by_name:
            ids.add(by_name[w])
        elif w.isdigit() and int(w) in by_name.values():
            ids.add(int(w))
        else:
            known = ", ".join(sorted(by_name)[:12]) + (", ..." if len(by_name) > 12 else "")
            raise UsageError(f"--coco-classes {w!r}: not a category of {source} (it has {known})")
    return ids


def _widened(bbox: list[float], context: float, width: int, height: int) -> tuple[int, int, int, int]:
    x, y, w, h = bbox
    dx, dy = w * context, h * context
    x0, y0 = max(0, int(np.floor(x - dx))), max(0, int(np.floor(y - dy)))
    x1, y1 = min(width, int(np.ceil(x + w + dx))), min(height, int(np.ceil(y + h + dy)))
    return x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)


def coco_samples(
    annotations: Path,
    images: Path,
    mode: str = "instances",
    classes: list[str] | None = None,
    min_area: float = 1024.0,
    context: float = 0.15,
) -> list[CocoSample]:
    """Read a COCO instances file; pictures are looked up in ``images`` by ``file_name``."""
    if mode not in COCO_MODES:
        raise UsageError(f"--coco-mode {mode!r}: expected one of {', '.join(COCO_MODES)}")
    try:
        data = json.loads(Path(annotations).read_text())
        pictures = {int(p["id"]): p for p in data["images"]}
        anns, categories = data["annotations"], data["categories"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        why = f"{type(e).__name__}: {e}"
        raise UsageError(f"--coco {annotations}: not a readable COCO instances file ({why})") from None
    keep = _category_ids(categories, classes, annotations)
    by_picture: dict[int, list[dict]] = {}
    for a in anns:
        if int(a["category_id"]) in keep and a.get("segmentation"):
            by_picture.setdefault(int(a["image_id"]), []).append(a)
    samples = []
    for pid in sorted(by_picture):
        pic = pictures.get(pid)
        if pic is None:
            continue  # an annotation of a picture the file does not list: nothing to load
        path, w, h = Path(images) / pic["file_name"], int(pic["width"]), int(pic["height"])
        found = by_picture[pid]
        if mode == "classes":
            samples.append(CocoSample(path, w, h, tuple(a["segmentation"] for a in found), None))
            continue
        for a in sorted(found, key=lambda a: int(a["id"])):
            if a.get("iscrowd") or float(a.get("area", 0)) < min_area:
                continue
            box = _widened(a["bbox"], context, w, h)
            samples.append(CocoSample(path, w, h, (a["segmentation"],), box))
    if not samples:
        raise UsageError(f"--coco {annotations}: no {mode} left after the class and size filters")
    return samples


def _rasterise(segmentation: object, width: int, height: int) -> np.ndarray:
    """Any COCO segmentation (polygons, RLE, compressed RLE) -> H x W bool."""
    if isinstance(segmentation, list):  # polygons
        rles = mask_utils.frPyObjects(segmentation, height, width)
        rle = mask_utils.merge(rles)
    elif isinstance(segmentation.get("counts"), list):  # uncompressed RLE (crowds)
        rle = mask_utils.frPyObjects(segmentation, height, width)
    else:
        counts = segmentation["counts"]
        rle = {"size": segmentation["size"], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    return mask_utils.decode(rle).astype(bool)


def load_sample(sample: CocoSample) -> tuple[np.ndarray, np.ndarray]:
    """The sample's RGB crop and its 0/255 mask (uint8), at the crop's own size."""
    rgb = open_named(sample.image).rgb
    if rgb.shape[:2] != (sample.height, sample.width):
        raise ValueError(
            f"{sample.image}: the picture is {rgb.shape[1]}x{rgb.shape[0]} but the COCO file says "
            f"{sample.width}x{sample.height}"
        )
    mask = np.zeros((sample.height, sample.width), bool)
    for seg in sample.segmentations:
        mask |= _rasterise(seg, sample.width, sample.height)
    if sample.box is not None:
        x0, y0, x1, y1 = sample.box
        rgb, mask = rgb[y0:y1, x0:x1], mask[y0:y1, x0:x1]
    return np.ascontiguousarray(rgb), mask.astype(np.uint8) * 255


def decode_coco(sample: CocoSample, size: int, interpolation: str = "bilinear") -> tuple[np.ndarray, np.ndarray]:
    """The training cache's decoder: RGB (S, S, 3) and mask (1, S, S), uint8, aspect ignored as the
    model sees it (the photo resized as inference resizes it, with the model's resampler)."""
    rgb, mask = load_sample(sample)
    rgb = resize_rgb(rgb, size, interpolation)
    mask = cv2.resize(mask, (size, size), interpolation=cv2.INTER_LINEAR)
    return rgb, mask[None]
