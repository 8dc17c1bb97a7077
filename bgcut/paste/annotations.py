"""Annotations of composed pictures: COCO instance segmentation (RLE, via pycocotools) and YOLO.

Per picture, the worker keeps a small JSON record (file, size, objects with their RLE). The
dataset-wide files are assembled from those records in picture order at the end, so ids and
bytes never depend on how many workers ran or in what order they finished.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from .compose import Composition


def encode_mask(mask: np.ndarray) -> dict:
    """A bool H x W mask -> COCO compressed RLE with ``counts`` as text (JSON-safe)."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def decode_mask(rle: dict) -> np.ndarray:
    return mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode("ascii")}).astype(bool)


def picture_record(file_name: str, comp: Composition, cutout_names: Sequence[str]) -> dict:
    h, w = comp.image.shape[:2]
    objects = []
    for obj in comp.objects:
        rle = encode_mask(obj.mask)
        coco_rle = {"size": rle["size"], "counts": rle["counts"].encode("ascii")}
        objects.append(
            {
                "category": obj.category,
                "source": cutout_names[obj.index],
                "blend": obj.blend,
                "segmentation": rle,
                "area": int(mask_utils.area(coco_rle)),
                "bbox": [int(v) for v in mask_utils.toBbox(coco_rle)],
                "occluded": round(1 - int(obj.mask.sum()) / obj.full_area, 4),
            }
        )
    return {"file_name": file_name, "width": w, "height": h, "objects": objects, "errors": comp.errors}


def coco_dataset(records: Iterable[dict], categories: Sequence[str]) -> dict:
    """Records in picture order -> a COCO dict; category ids are 1-based in ``categories`` order."""
    cat_id = {name: i for i, name in enumerate(categories, start=1)}
    images, annotations = [], []
    for image_id, rec in enumerate(records, start=1):
        images.append({"id": image_id, "file_name": rec["file_name"], "width": rec["width"], "height": rec["height"]})
        for obj in rec["objects"]:
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": cat_id[obj["category"]],
                    "segmentation": obj["segmentation"],
                    "area": obj["area"],
                    "bbox": obj["bbox"],
                    "iscrowd": 0,
                }
            )
    return {
        "info": {"description": "Synthetic cut-and-paste dataset made by bgcut paste"},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i, "name": name, "supercategory": "object"} for name, i in cat_id.items()],
    }


def _nearest(a: np.ndarray, b: np.ndarray) -> tuple[int, int]:
    d = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    i = int(d.argmin())
    return i // d.shape[1], i % d.shape[1]


def mask_polygon(mask: np.ndarray) -> np.ndarray:
    """One closed polygon (N x 2, pixel coordinates) tracing every part of a mask.

    YOLO segmentation labels allow one polygon per object, but an occluded object can fall
    apart into pieces; the pieces are joined by zero-width bridges between their nearest points
    (in, around, and back out the same way), which add no area.
    """
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    # A one-pixel tolerance drops the staircase points of slanted edges: labels ~5x shorter.
    parts = [
        cv2.approxPolyDP(c, 1.0, True)[:, 0, :].astype(np.int64)
        for c in sorted(contours, key=cv2.contourArea, reverse=True)
        if len(c)
    ]
    if not parts:
        return np.zeros((0, 2), np.int64)
    poly = parts[0]
    for part in parts[1:]:
        i, j = _nearest(poly, part)
        loop = np.concatenate([part[j:], part[: j + 1]])  # around the piece, back to where it was entered
        poly = np.concatenate([poly[: i + 1], loop, poly[i:]])
    return poly


def yolo_lines(comp_objects: Sequence[dict], categories: Sequence[str], width: int, height: int) -> str:
    """YOLO segmentation label text: ``class x1 y1 x2 y2 ...`` normalised to [0, 1], a line per object."""
    cls = {name: i for i, name in enumerate(categories)}
    lines = []
    for obj in comp_objects:
        poly = mask_polygon(decode_mask(obj["segmentation"]))
        if len(poly) < 3:
            continue
        coords = " ".join(f"{x / width:.6f} {y / height:.6f}" for x, y in poly)
        lines.append(f"{cls[obj['category']]} {coords}")
    return "".join(line + "\n" for line in lines)


def yolo_yaml(root: str, categories: Sequence[str]) -> str:
    names = "".join(f"  {i}: {json.dumps(name)}\n" for i, name in enumerate(categories))
    return f"path: {json.dumps(root)}\ntrain: images\nval: images\nnames:\n{names}"
