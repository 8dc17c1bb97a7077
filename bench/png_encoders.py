"""PNG encoders side by side on real cut-outs (issue 30): time, size, and exact pixels.

    python bench/png_encoders.py IMAGES MASKS [--limit 20] [--repeat 5]

Each image is cut out with its ground-truth mask (RGBA, fully transparent pixels black, as
``postprocess.cutout`` writes them), then encoded by each candidate on one thread. Prints a
Markdown table: the median ms per image over ``--repeat`` rounds, the mean file size against
libpng level 1 (the old default), and whether every file decodes back to the exact RGBA.
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

cv2.setNumThreads(1)


def _cv2(params: list[int]) -> Callable[[np.ndarray], bytes]:
    def encode(rgba: np.ndarray) -> bytes:
        ok, data = cv2.imencode(".png", cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA), params)
        assert ok
        return data.tobytes()

    return encode


def _pil(**kwargs: object) -> Callable[[np.ndarray], bytes]:
    def encode(rgba: np.ndarray) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(rgba).save(buf, "PNG", **kwargs)
        return buf.getvalue()

    return encode


def candidates() -> dict[str, Callable[[np.ndarray], bytes]]:
    found = {
        "libpng level 1, fast filters (cv2; old default)": _cv2(
            [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FAST_FILTERS]
        ),
        "libpng level 9, all filters (cv2)": _cv2([cv2.IMWRITE_PNG_COMPRESSION, 9]),
        "libpng level 6, all filters (cv2; --png small)": _cv2([cv2.IMWRITE_PNG_COMPRESSION, 6]),
        "libpng level 6 (PIL default)": _pil(),
        "libpng level 1 (PIL)": _pil(compress_level=1),
    }
    try:
        import fpng

        found["fpng 0.1.0 (--png fast)"] = lambda rgba: fpng.from_ndarray(np.ascontiguousarray(rgba))
    except ImportError:
        pass
    try:
        import imagecodecs

        found["imagecodecs png_encode level 1"] = lambda rgba: imagecodecs.png_encode(rgba, level=1)
    except ImportError:
        pass
    return found


def cutouts(images: Path, masks: Path, limit: int) -> list[np.ndarray]:
    out = []
    for path in sorted(images.iterdir())[:limit]:
        mask_path = masks / (path.stem + ".png")
        if not mask_path.is_file():
            continue
        rgb = np.array(Image.open(path).convert("RGB"))
        alpha = np.array(Image.open(mask_path).convert("L").resize(rgb.shape[1::-1]))
        visible = cv2.bitwise_and(rgb, rgb, mask=alpha)
        out.append(np.dstack([visible, alpha]))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("images", type=Path)
    ap.add_argument("masks", type=Path)
    ap.add_argument("--limit", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    pictures = cutouts(args.images, args.masks, args.limit)
    size = pictures[0].shape
    print(f"{len(pictures)} cut-outs from {args.images} (first {size[1]}x{size[0]} RGBA), one thread\n")
    print("| encoder | ms per image | size vs libpng level 1 | exact pixels |")
    print("| --- | --- | --- | --- |")
    reference = None
    for name, encode in candidates().items():
        rounds, files = [], []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            files = [encode(p) for p in pictures]
            rounds.append((time.perf_counter() - t0) / len(pictures) * 1000)
        total = sum(len(f) for f in files)
        reference = reference or total
        back = [np.array(Image.open(io.BytesIO(f))) for f in files]
        exact = all(np.array_equal(b, p) for b, p in zip(back, pictures, strict=True))
        print(f"| {name} | {statistics.median(rounds):.2f} | {total / reference:.2f}x | {'yes' if exact else 'NO'} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
