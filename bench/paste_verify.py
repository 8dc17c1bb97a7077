"""Check a `bgcut paste` set end to end: every COCO mask is exactly where its object is visible.

Makes a twin of the set with the same seed and options, but each cut-out repainted in a colour
of its own (same alpha), black backgrounds, and jitter and blending off. The random draws do
not depend on pixel values, so the twin places the same objects at the same places; in the
twin, an object is visible exactly where its colour is. The check, for every picture:
the set's masks (through pycocotools' COCO API) == the twin's masks == the twin's colour pixels,
masks are disjoint, and area, bbox and occlusion agree with the masks.

    python bench/paste_verify.py SET_DIR CUTOUTS... --backgrounds DIR [--classes map.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools.coco import COCO

from bgcut.paste import PasteOptions, paste_dataset
from bgcut.paste.sources import list_cutouts, load_classes


def _options(settings: dict, classes: dict[str, str]) -> PasteOptions:
    o = dict(settings["options"])
    for k in ("per_image", "scale", "blends", "size", "motion"):
        if o.get(k) is not None:
            o[k] = tuple(o[k])
    return dataclasses.replace(PasteOptions(**o), classes=classes)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("set_dir", type=Path)
    ap.add_argument("cutouts", nargs="+")
    ap.add_argument("--backgrounds", required=True, type=Path)
    ap.add_argument("--classes", type=Path)
    args = ap.parse_args()
    settings = json.loads((args.set_dir / "paste.json").read_text())
    classes = load_classes(args.classes) if args.classes else {}
    opt = _options(settings, classes)
    coco = COCO(str(args.set_dir / "annotations.json"))
    n = len(coco.getImgIds())
    cutouts, _ = list_cutouts(args.cutouts, classes)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        colours = {}
        for k, c in enumerate(cutouts):
            # distinct, never black: 24-bit codes 1..len
            code = (k + 1) * 9973 % (1 << 24) or 1
            colour = ((code >> 16) & 255, (code >> 8) & 255, code & 255)
            colours[c.name] = colour
            rgba = np.asarray(Image.open(c.path).convert("RGBA")).copy()
            rgba[:, :, :3] = colour
            dest = root / "cut" / c.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rgba).save(dest)
        for p in sorted(args.backgrounds.iterdir()):
            if p.is_file() and not p.name.startswith("."):
                with Image.open(p) as im:
                    size = im.size
                dest = root / "bg" / p.name
                dest.parent.mkdir(parents=True, exist_ok=True)
                Image.new("RGB", size).save(dest.with_suffix(".png"))
        twin_opt = dataclasses.replace(opt, jitter=0.0, blends=("none",), image_format="png", yolo=False)
        twin = root / "twin"
        s = paste_dataset([str(root / "cut")], str(root / "bg"), twin, n, twin_opt, workers=2)
        assert s.ok, s.line()
        checked = 0
        for image_id in sorted(coco.getImgIds()):
            info = coco.loadImgs(image_id)[0]
            stem = Path(info["file_name"]).stem
            rec = json.loads((args.set_dir / "records" / f"{stem}.json").read_text())
            twin_rec = json.loads((twin / "records" / f"{stem}.json").read_text())
            image = np.asarray(Image.open(twin / "images" / f"{stem}.png").convert("RGB"))
            anns = coco.loadAnns(coco.getAnnIds(imgIds=image_id))
            assert [o["segmentation"] for o in rec["objects"]] == [o["segmentation"] for o in twin_rec["objects"]]
            by_colour: dict[tuple, np.ndarray] = {}
            taken = np.zeros(image.shape[:2], bool)
            for ann, obj in zip(anns, rec["objects"], strict=True):
                mask = coco.annToMask(ann).astype(bool)
                assert mask.any() and not (mask & taken).any()
                taken |= mask
                ys, xs = np.nonzero(mask)
                assert ann["area"] == mask.sum()
                assert ann["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
                assert obj["occluded"] <= opt.max_occlusion + 1e-4
                colour = colours[obj["source"]]
                by_colour[colour] = by_colour.get(colour, np.zeros_like(mask)) | mask
                checked += 1
            painted_any = (image != 0).any(axis=2)
            for colour, union in by_colour.items():
                assert np.array_equal(union, (image == colour).all(axis=2)), f"{stem}: colour {colour}"
            assert np.array_equal(painted_any, taken), f"{stem}: pixels painted outside every annotation"
    print(f"{args.set_dir}: {n} pictures, {checked} annotations: every mask is exactly its object's visible pixels")


if __name__ == "__main__":
    main()
