"""Whether a DCT-scaled JPEG decode (``Image.draft``) would pay for the model input (issue 30).

    python bench/jpeg_draft.py PHOTO.jpg [--size 1024] [--rounds 5]

Times, on one thread: the full decode (which every cut-out needs for its own pixels), the model
input resized from it (today's route), and a second, DCT-scaled decode at the smallest scale
that still covers ``--size`` plus its resize (the draft route). Prints ms and how far the two
model inputs differ (the largest and mean absolute difference in levels).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
from PIL import Image

from bgcut.images import open_image, resize_rgb


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("photo", type=Path)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    ms: dict[str, list[float]] = {"full decode": [], "resize from it": [], "draft decode + resize": []}
    for _ in range(args.rounds):
        t0 = time.perf_counter()
        rgb = open_image(args.photo).rgb
        t1 = time.perf_counter()
        today = resize_rgb(rgb, args.size)
        t2 = time.perf_counter()
        with Image.open(args.photo) as im:
            im.draft("RGB", (args.size, args.size))
            scaled = im.size
            drafted = resize_rgb(np.asarray(im.convert("RGB")), args.size)
        t3 = time.perf_counter()
        for name, (a, b) in zip(ms, ((t0, t1), (t1, t2), (t2, t3)), strict=True):
            ms[name].append((b - a) * 1000)
    h, w = rgb.shape[:2]
    print(f"{args.photo.name}: {w}x{h}, model input {args.size} px, draft decoded at {scaled[0]}x{scaled[1]}")
    for name, values in ms.items():
        print(f"{name}: median {statistics.median(values):.1f} ms")
    diff = np.abs(today.astype(np.int16) - drafted.astype(np.int16))
    print(f"model input, draft against today: largest difference {diff.max()} levels, mean {diff.mean():.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
