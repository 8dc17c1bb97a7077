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


def run_bgcut(images: list[Path], out: Path, batch_size: int, workers: int) -> float:
    from bgcut import OutputOptions, RunOptions, remove_backgrounds

    t0 = time.perf_counter()
    summary = remove_backgrounds(
        [str(p) for p in images], out, RunOptions(model="isnet-general", batch_size=batch_size, workers=workers),
        OutputOptions(format="mask"), progress=False,
    )  # fmt: skip
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
    args = ap.parse_args()
    images = sorted(p for p in args.images.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[: args.n]
    with tempfile.TemporaryDirectory() as tmp:
        ort_out, bg_out = Path(tmp, "ort"), Path(tmp, "bgcut")
        ort_out.mkdir()
        t_ort = run_onnxruntime(args.onnx, images, ort_out, args.threads)
        t_bg = run_bgcut(images, bg_out, args.batch_size, args.workers)
        ious = []
        for p in images:
            a = np.asarray(Image.open(ort_out / f"{p.stem}.png")) >= 128
            b = np.asarray(Image.open(bg_out / f"{p.stem}.png")) >= 128
            ious.append((a & b).sum() / max(1, (a | b).sum()))
    import onnxruntime
    import torch

    n = len(images)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}")  # fmt: skip
    print(f"onnxruntime: {n} images in {t_ort:.1f}s = {n / t_ort:.3f} images/s")
    print(f"bgcut:       {n} images in {t_bg:.1f}s = {n / t_bg:.3f} images/s (batch {args.batch_size})")
    print(f"ratio bgcut/onnxruntime: {t_ort / t_bg:.2f}x; mask IoU min {min(ious):.4f}, mean {np.mean(ious):.4f}")


if __name__ == "__main__":
    main()
