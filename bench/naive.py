"""The baseline every tutorial writes: load one image, run the model at batch 1, save, repeat.

Same model and weights as bgcut (``create_model``), same pre-processing contract from the
model's config, but none of the engine: no decode workers, no batching, no fused batch norm,
no channels_last, PIL for every resize and PNG save, all in one thread of Python.

    python bench/naive.py IN_FOLDER OUT_FOLDER [--model NAME] [--format png-alpha|mask]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bgcut.models import create_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", type=Path)
    ap.add_argument("dst", type=Path)
    ap.add_argument("--model", default=None)
    ap.add_argument("--format", default="png-alpha", choices=["png-alpha", "mask"])
    args = ap.parse_args()

    loaded = create_model(args.model)
    model, cfg = loaded.module.eval(), loaded.cfg
    mean = torch.tensor(cfg.mean).view(1, 3, 1, 1)
    std = torch.tensor(cfg.std).view(1, 3, 1, 1)
    args.dst.mkdir(parents=True, exist_ok=True)
    for path in sorted(p for p in args.src.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png")):
        im = Image.open(path).convert("RGB")
        x = torch.from_numpy(np.asarray(im.resize((cfg.input_size,) * 2, Image.BILINEAR))).permute(2, 0, 1)[None]
        x = (x.float() / 255 - mean) / std
        with torch.no_grad():
            out = model(x)
        out = out[0] if isinstance(out, (list, tuple)) else out
        pred = torch.sigmoid(out)[0, 0]
        if cfg.output == "sigmoid-minmax":
            pred = (pred - pred.min()) / (pred.max() - pred.min()).clamp_min(1e-8)
        mask = Image.fromarray((pred.numpy() * 255).round().astype(np.uint8)).resize(im.size, Image.BILINEAR)
        if args.format == "mask":
            mask.save(args.dst / f"{path.stem}.png")
        else:
            im.putalpha(mask)
            im.save(args.dst / f"{path.stem}.png")


if __name__ == "__main__":
    main()
