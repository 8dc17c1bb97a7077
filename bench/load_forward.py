"""A model's start-up in parts: the imports, the load, and the first and second forward of one photo.

    python bench/load_forward.py PHOTO [-m MODEL] [--device cpu]

One process, as a one-photo ``bgcut PHOTO -o cut.png`` spends it (the whole command adds the CLI,
the decode, the render, the encode and the exit): ``Predictor.from_options`` is the load (build,
read, checksum, fuse), then ``Predictor.masks`` on the photo twice.
"""

from __future__ import annotations

import argparse
import time

t0 = time.perf_counter()
import torch  # noqa: E402,F401 - timed: the import is part of the start-up

from bgcut.config import RunOptions  # noqa: E402
from bgcut.images import open_image  # noqa: E402
from bgcut.pipeline.infer import Predictor  # noqa: E402

IMPORTED = time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("photo")
    ap.add_argument("-m", "--model", default=None, help="default: bgcut's default model")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    t = time.perf_counter()
    predictor = Predictor.from_options(RunOptions(model=args.model, device=args.device))
    load = time.perf_counter() - t
    rgb = open_image(args.photo).rgb
    x = predictor.prepare(rgb)
    forwards = []
    for _ in range(2):
        t = time.perf_counter()
        next(predictor.masks([x], [rgb.shape[:2]]))
        forwards.append(time.perf_counter() - t)
    print(
        f"{predictor.model_name} at {predictor.size} px, batch {predictor.batch_size}: imports {IMPORTED:.2f} s, "
        f"load {load:.2f} s, first forward {forwards[0]:.2f} s, second {forwards[1]:.2f} s"
    )


if __name__ == "__main__":
    main()
