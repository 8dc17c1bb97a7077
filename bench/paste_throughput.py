"""Throughput of `bgcut paste`: images/s composing pictures of a fixed size with a fixed object count.

Each setting runs --repeats times into a fresh folder (no resume), and the median is reported,
with the blend mix that was drawn.

    python bench/paste_throughput.py CUTOUTS --backgrounds ../shared/data/backgrounds \
        --size 1024x768 --objects 5 -n 100 --workers 0,1,2 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import cv2

from bgcut import __version__
from bgcut.paste import BLENDS, PasteOptions, paste_dataset
from bgcut.paste.options import parse_blends, parse_size


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cutouts", nargs="+")
    ap.add_argument("--backgrounds", required=True)
    ap.add_argument("--size", default="1024x768")
    ap.add_argument("--objects", type=int, default=5)
    ap.add_argument("-n", type=int, default=100)
    ap.add_argument("--workers", default="0,2")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--blend", default=",".join(BLENDS), help="comma-separated modes drawn per object")
    ap.add_argument("--per-mode", action="store_true", help="also run each mode of --blend on its own")
    args = ap.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cpus; bgcut {__version__}; opencv {cv2.__version__}")
    print(f"{args.n} pictures of {args.size}, {args.objects} objects each, median of {args.repeats}")
    print("| blend | workers | seconds | images/s |\n| --- | --- | --- | --- |")
    blend_sets = [parse_blends(args.blend)]
    if args.per_mode:
        blend_sets += [(b,) for b in blend_sets[0]]
    for blends in blend_sets:
        for workers in (int(w) for w in args.workers.split(",")):
            opt = PasteOptions(per_image=(args.objects, args.objects), size=parse_size(args.size), blends=blends)
            times = []
            for _ in range(args.repeats):
                with tempfile.TemporaryDirectory() as tmp:
                    t0 = time.perf_counter()
                    s = paste_dataset(args.cutouts, args.backgrounds, Path(tmp), args.n, opt, workers=workers)
                    times.append(time.perf_counter() - t0)
                    assert s.done == args.n, s.line()
            med = statistics.median(times)
            print(f"| {'+'.join(blends)} | {workers} | {med:.2f} | {args.n / med:.1f} |", flush=True)


if __name__ == "__main__":
    main()
