"""Contact sheet of a `bgcut paste` set: pictures with their COCO annotations drawn over them.

Masks are decoded through pycocotools' COCO API (the way a training loader reads them), so
the sheet shows what a detector would be trained on: each instance's visible mask tinted,
its outline, its box and its class name.

    python bench/paste_preview.py OUT/annotations.json -o sheet.jpg --n 12 --cols 4
"""

from __future__ import annotations

import argparse
import colorsys
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from pycocotools.coco import COCO


def _colour(k: int) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb((k * 0.618) % 1.0, 0.9, 1.0)
    return int(r * 255), int(g * 255), int(b * 255)


def draw(coco: COCO, root: Path, image_id: int) -> np.ndarray:
    info = coco.loadImgs(image_id)[0]
    image = np.asarray(Image.open(root / info["file_name"]).convert("RGB")).copy()
    for k, ann in enumerate(coco.loadAnns(coco.getAnnIds(imgIds=image_id))):
        colour = _colour(k)
        mask = coco.annToMask(ann).astype(bool)
        image[mask] = (0.55 * image[mask] + 0.45 * np.array(colour)).astype(np.uint8)
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(image, contours, -1, colour, 1)
        x, y, w, h = (int(v) for v in ann["bbox"])
        cv2.rectangle(image, (x, y), (x + w - 1, y + h - 1), colour, 2)
        name = coco.loadCats(ann["category_id"])[0]["name"]
        cv2.putText(image, name, (x + 2, y + 16), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(image, name, (x + 2, y + 16), cv2.FONT_HERSHEY_SIMPLEX, 0.55, colour, 1, cv2.LINE_AA)
    return image


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("annotations", type=Path)
    ap.add_argument("-o", "--output", type=Path, default=Path("paste-sheet.jpg"))
    ap.add_argument("--n", type=int, default=12)
    ap.add_argument("--cols", type=int, default=4)
    ap.add_argument("--width", type=int, default=480, help="width of each tile")
    args = ap.parse_args()
    coco = COCO(str(args.annotations))
    tiles = []
    for image_id in sorted(coco.getImgIds())[: args.n]:
        tile = draw(coco, args.annotations.parent, image_id)
        h = round(tile.shape[0] * args.width / tile.shape[1])
        tiles.append(cv2.resize(tile, (args.width, h), interpolation=cv2.INTER_AREA))
    th = max(t.shape[0] for t in tiles)
    rows = -(-len(tiles) // args.cols)
    sheet = np.full((rows * th, args.cols * args.width, 3), 255, np.uint8)
    for k, tile in enumerate(tiles):
        r, c = divmod(k, args.cols)
        sheet[r * th : r * th + tile.shape[0], c * args.width : (c + 1) * args.width] = tile
    Image.fromarray(sheet).save(args.output, quality=90)
    print(f"{args.output}: {len(tiles)} pictures")


if __name__ == "__main__":
    main()
