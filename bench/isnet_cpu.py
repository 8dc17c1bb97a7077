"""IS-Net on CPU, side by side in one run: bgcut isnet-general vs onnxruntime on the reference ONNX.

Both sides do the whole job on the same images, one after the other: decode the JPEG,
resize to 1024x1024, run the network, resize the mask back, write an 8-bit PNG mask.
onnxruntime is not a bgcut dependency: run this in an environment that has it.

    python bench/isnet_cpu.py --onnx isnet.onnx --images ../shared/data/eval/davis16/images -n 50

The bgcut side needs the imported weights: `bgcut models import isnet.onnx --arch isnet --name isnet-general`.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def run_onnxruntime(onnx_path: Path, images: list[Path], out: Path, threads: int) -> float:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    t0 = time.perf_counter()
    for path in images:
        im = Image.open(path).convert("RGB")
        x = (np.asarray(im.resize((1024, 1024), Image.BILINEAR), np.float32) - 128) / 256
        pred = session.run(None, {"input": x.transpose(2, 0, 1)[None]})[0][0, 0]
        mask = np.asarray(Image.fromarray(pred, "F").resize(im.size, Image.BILINEAR))
        Image.fromarray(np.clip(mask * 255 + 0.5, 0, 255).astype(np.uint8)).save(out / f"{path.stem}.png")
    return time.perf_counter() - t0


def run_bgcut(images: list[Path], out: Path, batch_size: int, workers: int, precision: str) -> float:
    from bgcut import OutputOptions, RunOptions, remove_backgrounds

    run = RunOptions(model="isnet-general", batch_size=batch_size, workers=workers, precision=precision, device="cpu")
    t0 = time.perf_counter()
    summary = remove_backgrounds([str(p) for p in images], out, run, OutputOptions(format="mask"), progress=False)
    assert summary.failed == 0, summary.line()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--onnx", type=Path, required=True)
    ap.add_argument("--images", type=Path, required=True)
    ap.add_argument("-n", type=int, default=50)
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="onnxruntime intra-op threads")
    ap.add_argument("--precision", default="fp32", help="comma-separated bgcut precisions to run, e.g. fp32,bf16")
    args = ap.parse_args()
    images = sorted(p for p in args.images.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[: args.n]
    import onnxruntime
    import torch

    n = len(images)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}; {n} images")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        ort_out = Path(tmp, "ort")
        ort_out.mkdir()
        t_ort = run_onnxruntime(args.onnx, images, ort_out, args.threads)
        print(f"onnxruntime: {t_ort:.1f}s = {n / t_ort:.3f} images/s", flush=True)
        for precision in args.precision.split(","):
            bg_out = Path(tmp, f"bgcut-{precision}")
            t_bg = run_bgcut(images, bg_out, args.batch_size, args.workers, precision)
            ious, mads = [], []
            for p in images:
                a = np.asarray(Image.open(ort_out / f"{p.stem}.png"), np.float32) / 255
                b = np.asarray(Image.open(bg_out / f"{p.stem}.png"), np.float32) / 255
                union = ((a >= 0.5) | (b >= 0.5)).sum()
                ious.append(((a >= 0.5) & (b >= 0.5)).sum() / union if union else 1.0)
                mads.append(np.abs(a - b).mean())
            print(f"bgcut {precision} (batch {args.batch_size}): {t_bg:.1f}s = {n / t_bg:.3f} images/s, "
                  f"{t_ort / t_bg:.2f}x onnxruntime; vs onnxruntime masks: min IoU {min(ious):.4f}, "
                  f"max mean abs diff {max(mads) * 255:.3f}/255", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
