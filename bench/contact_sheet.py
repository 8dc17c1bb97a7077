"""A contact sheet to judge cut-outs by eye: each photo beside its cut-out(s) on a checkerboard.

    python bench/contact_sheet.py PHOTOS -o sheet.png --cutouts OUT_A [OUT_B ...] [--every 12] [--limit 12]

One row per photo (sorted by name; ``--every K`` takes every K-th, ``--limit N`` the first N of
those): the photo, then each folder's cut-out of the same stem (RGBA PNGs, as ``bgcut
--format png-alpha`` writes them, or masks, as ``bgcut eval --save-masks`` keeps them) on a grey
checkerboard, each labelled with its folder's name.
A scorer's number says how far a mask is from the ground truth; this shows whether the cut-out
is usable (a kept wall, a lost arm, a halo).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

CELL = 256  # the longer side of each tile, in pixels
SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}


def checkerboard(w: int, h: int, square: int = 12) -> Image.Image:
    ys, xs = np.mgrid[0:h, 0:w]
    board = np.where(((ys // square + xs // square) % 2) == 0, 205, 150).astype(np.uint8)
    return Image.fromarray(np.dstack([board] * 3))


def tile(image: Image.Image) -> Image.Image:
    image = image.copy()
    image.thumbnail((CELL, CELL))
    if image.mode == "RGBA":
        back = checkerboard(*image.size)
        back.paste(image, (0, 0), image)
        return back
    return image.convert("RGB")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("photos", type=Path)
    ap.add_argument("-o", "--out", type=Path, required=True)
    ap.add_argument("--cutouts", type=Path, nargs="+", required=True)
    ap.add_argument("--every", type=int, default=1)
    ap.add_argument("--limit", type=int, default=None)
    args = ap.parse_args(argv)
    photos = sorted(p for p in args.photos.iterdir() if p.suffix.lower() in SUFFIXES)[:: args.every]
    photos = photos[: args.limit] if args.limit else photos
    label_h = 16
    sheet = Image.new("RGB", (CELL * (1 + len(args.cutouts)), (CELL + label_h) * len(photos)), "white")
    draw = ImageDraw.Draw(sheet)
    for row, photo in enumerate(photos):
        y = row * (CELL + label_h)
        sheet.paste(tile(Image.open(photo)), (0, y + label_h))
        draw.text((4, y + 2), photo.name, fill="black")
        for col, folder in enumerate(args.cutouts, start=1):
            found = next((p for p in folder.rglob(f"{photo.stem}.png")), None)
            if found is not None:
                cut = Image.open(found)
                if cut.mode == "L":  # a mask (bgcut eval --save-masks): the photo cut out by it
                    cut = Image.open(photo).convert("RGB").resize(cut.size)
                    cut.putalpha(Image.open(found))
                sheet.paste(tile(cut.convert("RGBA")), (col * CELL, y + label_h))
            draw.text((col * CELL + 4, y + 2), folder.name if found else f"{folder.name}: missing", fill="black")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out)
    print(f"wrote {args.out}: {len(photos)} rows")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
