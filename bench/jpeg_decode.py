"""PIL against OpenCV for the engine's JPEG decoding (issue 30): the same pixels, and the time.

    python bench/jpeg_decode.py DIR [DIR ...] [--time-limit 138] [--rounds 5]

Every JPEG under the folders is decoded both ways by ``bgcut.images.open_image`` (PIL alone, and
``fast_jpeg=True`` inside ``decoder_noise`` as the decode workers run it) and the RGB arrays are
compared; the first folder's first ``--time-limit`` files are then timed both ways, alternating
in one process, for ``--rounds`` rounds. Prints the counts and the median and mean ms per file.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import cv2
import numpy as np

from bgcut.images import decoder_noise, open_image


def jpegs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg"))


def fast(path: Path) -> np.ndarray:
    with decoder_noise():
        return open_image(path, fast_jpeg=True).rgb


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folders", type=Path, nargs="+")
    ap.add_argument("--time-limit", type=int, default=138)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    cv2.setNumThreads(1)  # as in a decode worker
    files = [p for f in args.folders for p in jpegs(f)]
    differ = [p for p in files if not np.array_equal(open_image(p).rgb, fast(p))]
    print(f"{len(files)} JPEGs, {len(differ)} with different pixels", *differ[:10], sep="\n  ")
    timed = jpegs(args.folders[0])[: args.time_limit]
    ms: dict[str, list[float]] = {"PIL": [], "OpenCV": []}
    for _ in range(args.rounds):
        for name, decode in (("PIL", lambda p: open_image(p).rgb), ("OpenCV", fast)):
            for p in timed:
                t0 = time.perf_counter()
                decode(p)
                ms[name].append((time.perf_counter() - t0) * 1000)
    for name, values in ms.items():
        print(f"{name}: median {statistics.median(values):.2f} ms, mean {statistics.mean(values):.2f} ms per file")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
