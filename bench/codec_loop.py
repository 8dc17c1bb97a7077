"""The floor of a cut-out job without a model (issue 30): decode, an alpha, encode, write.

    python bench/codec_loop.py IN_FOLDER OUT_FOLDER

One process, one loop, nothing else: ``cv2.imread``, an alpha from brightness (what the
``luma_test`` model computes: sigmoid(40 * (brightness - 0.5))), RGBA with RGB cleared where the
alpha is 0, ``cv2.imencode`` PNG level 1 with libpng's fast filters, and a plain file write.
Compare it, as whole processes, with ``bgcut IN_FOLDER -o OUT -w LUMA_FOLDER`` on the same photos.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("src", type=Path)
    ap.add_argument("dst", type=Path)
    args = ap.parse_args()
    args.dst.mkdir(parents=True, exist_ok=True)
    params = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FAST_FILTERS]
    for path in sorted(args.src.iterdir()):
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            continue
        grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY).astype(np.float32) / 255
        alpha = (255 / (1 + np.exp(-40 * (grey - 0.5)))).astype(np.uint8)
        bgra = cv2.merge([*cv2.split(cv2.bitwise_and(bgr, bgr, mask=alpha)), alpha])
        ok, data = cv2.imencode(".png", bgra, params)
        assert ok
        (args.dst / (path.stem + ".png")).write_bytes(data.tobytes())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
