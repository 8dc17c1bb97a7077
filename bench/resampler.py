"""Does training's resampler change move a model's validation numbers? (issue 17)

    python bench/resampler.py [--model bgcut-lite] [--val-fraction 0.1] [-j 2]

Training used to shrink photos with OpenCV's INTER_AREA; it now calls inference's own
``images.resize_rgb`` (PIL, the model config's resampler). This scores one model's
weights on the held-out DUTS-TR split (``split_pairs``, by hash of the file stem) both ways,
through training's own ``validate``, and prints one JSON line: the metrics of each and the
mean absolute difference of the model inputs (0-255 levels).
"""

from __future__ import annotations

import argparse
import json
from functools import partial
from pathlib import Path

import cv2
import numpy as np
import torch

from bgcut.images import open_named
from bgcut.models import create_model
from bgcut.train.data import cache_items, decode_pair, list_pairs, split_pairs
from bgcut.train.loop import validate

DUTS = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "duts-tr"


def decode_pair_area(item: tuple[Path, Path, Path | None], size: int) -> tuple[np.ndarray, np.ndarray]:
    """Training's decoder before the change: the photo shrunk with cv2.INTER_AREA, the mask as now."""
    _, masks = decode_pair(item, size)
    photo = open_named(item[0]).rgb
    return cv2.resize(photo, (size, size), interpolation=cv2.INTER_AREA), masks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="bgcut-lite")
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("-j", "--workers", type=int, default=2)
    args = parser.parse_args()
    loaded = create_model(args.model)
    cfg, size = loaded.cfg, loaded.cfg.input_size
    _, val = split_pairs(list_pairs(DUTS / "images", DUTS / "masks"), args.val_fraction)
    items = [(img, mask, None) for img, mask in val]
    torch.set_num_threads(2)
    result: dict[str, object] = {"model": cfg.name, "pairs": len(items), "interpolation": cfg.interpolation}
    inputs = {}
    for name, decode in (
        ("cv2-area (before)", decode_pair_area),
        (f"pil-{cfg.interpolation} (now, as inference)", partial(decode_pair, interpolation=cfg.interpolation)),
    ):
        images, masks, _ = cache_items(items, decode, size, 1, args.workers, log=lambda _m: None)
        inputs[name] = images
        metrics = validate(loaded.module, images, masks, cfg, torch.device("cpu"))
        result[name] = {k: round(v, 4) for k, v in metrics.items() if isinstance(v, float)}
    a, b = inputs.values()
    result["input_mean_abs_diff"] = round(float((a.float() - b.float()).abs().mean()), 3)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
