"""What applying the EXIF orientation in place saves in decoding (issue 30).

    python bench/exif_in_place.py IMAGES [--rounds 5]

Decodes every JPEG in IMAGES the way ``bgcut.images`` does (open, load, orientation, to arrays),
once with ``ImageOps.exif_transpose``'s copying form (bgcut before) and once in place (now),
alternating which goes first, in one process. Prints the median and mean ms per photo of each.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from PIL import Image, ImageOps

from bgcut.images import _normalise


def copying(path: Path) -> None:
    with Image.open(path) as im:
        im.load()
        _normalise(ImageOps.exif_transpose(im))


def in_place(path: Path) -> None:
    with Image.open(path) as im:
        im.load()
        ImageOps.exif_transpose(im, in_place=True)
        _normalise(im)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("images", type=Path)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    files = sorted(args.images.glob("*.jpg"))
    times: dict[str, list[float]] = {"copying": [], "in place": []}
    for r in range(args.rounds):
        for i, path in enumerate(files):
            order = [("copying", copying), ("in place", in_place)]
            for name, decode in order if (i + r) % 2 else order[::-1]:
                start = time.perf_counter()
                decode(path)
                times[name].append(time.perf_counter() - start)
    for name, t in times.items():
        print(f"{name}: median {statistics.median(t) * 1000:.2f} ms, mean {statistics.mean(t) * 1000:.2f} ms per photo")


if __name__ == "__main__":
    main()
