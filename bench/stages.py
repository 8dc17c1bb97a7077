"""What each stage of one cut-out costs, per image, on one thread (issue 30).

    python bench/stages.py IMAGES [--model bgcut-lite | --weights DIR] [--limit 40] [--batch 8] [--format png-alpha]

Runs the engine's own functions in order on each photo, timing each on one thread
(``torch.set_num_threads(1)``): ``images.open_image`` as a decode worker calls it,
``preprocess.resize_for_model``, the model
(``Predictor.__call__`` on a batch of ``--batch``: normalise, forward, output rule; the time is
shared out per image), the mask's upsample to the photo's size, ``postprocess.render`` (the mask
options and the composite), the doubt score (``doubt.measure``), ``writer.encode`` and
``storage.atomic_write`` into a temporary folder.
Prints a Markdown table of the median ms per image of each stage and the sum, then the images per
second one core sustains for the host side alone (everything but the model): the figure a GPU
machine's projection starts from.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from bgcut.config import OutputOptions, PostOptions, RunOptions
from bgcut.images import decoder_noise, open_image
from bgcut.pipeline.doubt import measure as measure_doubt
from bgcut.pipeline.infer import Predictor, upsample_mask
from bgcut.pipeline.postprocess import render
from bgcut.pipeline.preprocess import resize_for_model
from bgcut.pipeline.writer import encode
from bgcut.storage import atomic_write


def worker_decode(path: Path):  # noqa: ANN201
    """As a decode worker decodes (``DecodeDataset``): OpenCV for plain JPEGs, inside ``decoder_noise``."""
    with decoder_noise():
        return open_image(path, fast_jpeg=True)


HOST = ("decode", "model input resize", "mask upsample", "render", "doubt", "encode", "write")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("images", type=Path)
    ap.add_argument("--model", default="bgcut-lite")
    ap.add_argument("--weights", default=None, help="a weights folder instead of --model (e.g. the luma_test model)")
    ap.add_argument("--limit", type=int, default=40)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--format", default="png-alpha")
    args = ap.parse_args()
    torch.set_num_threads(1)
    predictor = Predictor.from_options(
        RunOptions(
            model=None if args.weights else args.model, weights=args.weights, device="cpu", batch_size=args.batch
        ),
        pad=False,
    )
    out, post = OutputOptions(format=args.format), PostOptions()
    paths = sorted(p for p in args.images.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[: args.limit]
    times: dict[str, list[float]] = {}

    def timed(stage: str, fn, *a):  # noqa: ANN001, ANN002, ANN202
        t0 = time.perf_counter()
        result = fn(*a)
        times.setdefault(stage, []).append((time.perf_counter() - t0) * 1000)
        return result

    folder = Path(tempfile.mkdtemp(prefix="bgcut-stages-"))
    predictor(torch.zeros((1, 3, predictor.size, predictor.size), dtype=torch.uint8))  # first-call set-up, untimed
    for start in range(0, len(paths), args.batch):
        chunk = paths[start : start + args.batch]
        decoded = [timed("decode", worker_decode, p) for p in chunk]
        inputs = [
            timed("model input resize", resize_for_model, d.rgb, predictor.size, predictor.cfg.interpolation)
            for d in decoded
        ]
        t0 = time.perf_counter()
        probs = predictor(torch.stack(inputs))
        share = (time.perf_counter() - t0) * 1000 / len(chunk)
        times.setdefault("model (forward, per image of the batch)", []).extend([share] * len(chunk))
        for d, p, prob in zip(decoded, chunk, probs, strict=True):
            h, w = d.rgb.shape[:2]
            mask = timed("mask upsample", upsample_mask, prob, h, w)
            result = timed("render", render, d.rgb, d.alpha, mask, post, out, None, predictor.size)
            timed("doubt", measure_doubt, mask)
            data = timed("encode", encode, result.images[0][1], out.extension, out.png)
            timed("write", atomic_write, folder / f"{p.stem}{out.extension}", data)
    first = open_image(paths[0]).rgb.shape
    print(
        f"{len(paths)} photos from {args.images} (first {first[1]}x{first[0]}),",
        f"{args.weights or args.model}, {args.format}",
        end="",
    )
    print(", one thread\n")
    print("| stage | ms per image (median) |")
    print("| --- | --- |")
    host = 0.0
    for stage, values in times.items():
        median = statistics.median(values)
        host += median if stage in HOST else 0.0
        print(f"| {stage} | {median:.2f} |")
    total = host + statistics.median(times["model (forward, per image of the batch)"])
    print(f"| all | {total:.2f} |")
    print(f"\nhost side alone: {host:.2f} ms per image, {1000 / host:.0f} images/s on one core")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
