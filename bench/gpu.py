"""The accelerator measurements of issue 14, in one command that fits one device call.

    python bench/gpu.py --out $OUT/gpu.json [--models bgcut-lite,isnet-general]
                        [--images DIR] [--seconds-per-case 3]
    python bench/gpu.py --tiny --device cpu --out /tmp/gpu.json      # the same code, in seconds, on CPU

Sections, each written to the JSON file as soon as it is measured, so that a call stopped at its
time limit still brings back what it finished:

- ``env``: the device's name, torch, CUDA and cuDNN versions, the host's cores.
- ``model``: model-only images/s for each model x precision (fp32, fp16, bf16) x batch size
  (1, 8, 32, 64), on uint8 inputs already on the device (``Predictor.__call__``: normalise,
  forward, output rule), and the peak device memory of each; "oom" where it does not fit.
- ``parity``: fp16 and bf16 masks against fp32 on ``--images`` (davis16), IoU at 0.5 per image:
  the mean and the worst (the target is at least 0.99 on every image).
- ``fit12mp``: the largest batch whose masks, upsampled to 12 MP (4000x3000) each, fit, by doubling.
- ``oomcap``: the engine on 12 MP photos with the device's memory capped
  (``torch.cuda.set_per_process_memory_fraction``) and a batch far too large: the run must
  complete, lower its batch size (the warnings are kept) and write every file.

End-to-end throughput at -j 4/8/16 is ``bench/run.py e2e`` on the same machine.

On the device machine only the checkout travels (64 MiB a call, ignored folders by ``carry``):
copy davis16's JPEGs into ``bench/data/davis16`` (about 10 MB) and pass ``--images
bench/data/davis16``. isnet-general's weights do not fit one call (44M parameters: 88 MB even
in fp16): ``python bench/carry.py split isnet-general .carry/isnet-general --fp16`` cuts them
into a 60 MiB and a 24 MiB part (the joined fp16 weights gave masks within 1 level of fp32 on
davis16 frames). Carry the folder with part-000 in one call and part-001 in the next, while the
machine stays warm. Join them there with ``python bench/carry.py join ...``, then pass the
joined folder with ``--weights-isnet DIR``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bgcut.config import OutputOptions, RunOptions
from bgcut.devices import pick_device, pick_dtype
from bgcut.models import create_model
from bgcut.pipeline.infer import Predictor
from bgcut.run import remove_backgrounds

HERE = Path(__file__).resolve().parent
DAVIS = HERE.parent.parent / "shared" / "data" / "eval" / "davis16" / "images"
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class Report:
    """The JSON file, rewritten after every result."""

    def __init__(self, path: Path) -> None:
        self.path, self.data = path, {}
        path.parent.mkdir(parents=True, exist_ok=True)

    def add(self, section: str, value: object) -> None:
        self.data.setdefault(section, []).append(value)
        self.path.write_text(json.dumps(self.data, indent=1) + "\n")
        print(json.dumps({section: value}), flush=True)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_mb(device: torch.device) -> float | None:
    return round(torch.cuda.max_memory_allocated(device) / 2**20, 1) if device.type == "cuda" else None


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def env(device: torch.device) -> dict[str, object]:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE)
    info: dict[str, object] = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else None,
        "host_cores": os.cpu_count(),
        "python": platform.python_version(),
        "bgcut_commit": commit.stdout.strip() or None,
    }
    return info


WEIGHTS: dict[str, str] = {}  # model name -> a local weights folder (--weights-isnet), else resolved by name


def predictor(model: str, device: torch.device, precision: str, batch: int) -> Predictor:
    loaded = create_model(None if model in WEIGHTS else model, WEIGHTS.get(model), device="cpu")
    return Predictor(loaded, device, pick_dtype(precision, device), batch_size=batch, pad=False)


def model_only(args: argparse.Namespace, device: torch.device, report: Report) -> None:
    for model in args.models:
        for precision in args.precisions:
            for batch in args.batches:
                _reset_peak(device)
                try:
                    p = predictor(model, device, precision, batch)
                    x = torch.randint(0, 256, (batch, 3, p.size, p.size), dtype=torch.uint8, device=device)
                    for _ in range(args.warmup):
                        p(x)
                    _sync(device)
                    times, started = [], time.perf_counter()
                    while time.perf_counter() - started < args.seconds_per_case or len(times) < 3:
                        t = time.perf_counter()
                        p(x)
                        _sync(device)
                        times.append(time.perf_counter() - t)
                    result = {"images_per_s": round(batch / statistics.median(times), 1), "runs": len(times)}
                except torch.OutOfMemoryError:
                    result = {"images_per_s": "oom"}
                report.add(
                    "model",
                    {"model": model, "precision": precision, "batch": batch, **result, "peak_mb": _peak_mb(device)},
                )
                del p


def _photos(folder: Path | None, count: int, size: tuple[int, int]) -> list[np.ndarray]:
    if folder is not None and folder.is_dir():
        paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".png"))[:count]
        return [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    rng = np.random.default_rng(0)  # --tiny without photos: smooth shapes, not noise
    out = []
    for _ in range(count):
        img = np.zeros((*size[::-1], 3), np.uint8)
        h, w = img.shape[:2]
        y0, x0 = rng.integers(0, h // 2), rng.integers(0, w // 2)
        img[y0 : y0 + h // 2, x0 : x0 + w // 2] = rng.integers(100, 256, 3)
        out.append(img)
    return out


def parity(args: argparse.Namespace, device: torch.device, report: Report) -> None:
    photos = _photos(args.images, args.parity_images, (854, 480))
    for model in args.models:
        masks: dict[str, list[np.ndarray]] = {}
        for precision in ("fp32", "fp16", "bf16"):
            if precision not in args.precisions and precision != "fp32":
                continue
            p = predictor(model, device, precision, 8)
            masks[precision] = list(p.masks([p.prepare(im) for im in photos], [im.shape[:2] for im in photos]))
        for precision, got in masks.items():
            if precision == "fp32":
                continue
            ious = []
            for a, b in zip(got, masks["fp32"], strict=True):
                fa, fb = a >= 128, b >= 128
                union = np.logical_or(fa, fb).sum()
                ious.append(1.0 if union == 0 else float(np.logical_and(fa, fb).sum() / union))
            found = {"images": len(ious), "mean_iou": round(float(np.mean(ious)), 5)}
            found |= {"worst_iou": round(min(ious), 5), "below_0.99": sum(i < 0.99 for i in ious)}
            report.add("parity", {"model": model, "precision": precision, **found})


def fit12mp(args: argparse.Namespace, device: torch.device, report: Report) -> None:
    h, w = args.big
    for model in args.models:
        p = predictor(model, device, args.precisions[-1] if device.type == "cuda" else "fp32", 1)
        one = torch.randint(0, 256, (3, p.size, p.size), dtype=torch.uint8)
        fits, batch, peak = 0, 1, None
        while batch <= args.max_batch:
            _reset_peak(device)
            p.batch_size = batch
            try:
                for _ in p.masks([one] * batch, [(h, w)] * batch):
                    pass
                _sync(device)
                fits, peak = batch, _peak_mb(device)
                batch *= 2
            except torch.OutOfMemoryError:
                break
        report.add("fit12mp", {"model": model, "size": f"{w}x{h}", "largest_batch": fits, "peak_mb": peak})


def oomcap(args: argparse.Namespace, device: torch.device, report: Report) -> None:
    """The engine's back-off, forced: a memory cap and a batch far over it."""
    h, w = args.big
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in"
        src.mkdir()
        for i, im in enumerate(_photos(args.images, args.oom_images, (854, 480))):
            Image.fromarray(im).resize((w, h), Image.BILINEAR).save(src / f"big{i:02d}.jpg", quality=90)
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.set_per_process_memory_fraction(args.memory_fraction, device)
        said: list[str] = []
        try:
            name = args.models[-1]
            run = RunOptions(
                model=None if name in WEIGHTS else name,
                weights=WEIGHTS.get(name),
                device=str(device),
                batch_size=args.oom_batch,
                workers=4,
            )
            summary = remove_backgrounds([str(src)], Path(tmp) / "out", run, OutputOptions(), log=said.append)
        finally:
            if device.type == "cuda":
                torch.cuda.set_per_process_memory_fraction(1.0, device)
        written = len(list((Path(tmp) / "out").glob("*.png")))
        report.add(
            "oomcap",
            {"model": args.models[-1], "photos": args.oom_images, "size": f"{w}x{h}", "batch_asked": args.oom_batch,
             "memory_fraction": args.memory_fraction if device.type == "cuda" else None, "done": summary.done,
             "failed": summary.failed, "written": written, "warnings": [m for m in said if "memory" in m]},
        )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--models", default="bgcut-lite,isnet-general")
    parser.add_argument("--precisions", default="fp32,fp16,bf16")
    parser.add_argument("--batches", default="1,8,32,64")
    parser.add_argument("--images", type=Path, default=DAVIS, help="photos for parity and the 12 MP run (davis16)")
    parser.add_argument("--seconds-per-case", type=float, default=3.0)
    parser.add_argument("--sections", default="env,model,parity,fit12mp,oomcap")
    parser.add_argument("--tiny", action="store_true", help="a few seconds on CPU: the same code, small settings")
    parser.add_argument("--weights-isnet", help="isnet-general's weights folder, joined by bench/carry.py")
    args = parser.parse_args()
    device = pick_device(args.device)
    if args.weights_isnet:
        WEIGHTS["isnet-general"] = args.weights_isnet
    args.models = args.models.split(",")
    args.precisions = args.precisions.split(",")
    args.batches = [int(b) for b in args.batches.split(",")]
    args.warmup, args.parity_images, args.big, args.max_batch = 3, 138, (3000, 4000), 64
    args.oom_images, args.oom_batch, args.memory_fraction = 16, 64, 0.08
    if args.tiny:
        args.models, args.precisions, args.batches = ["bgcut-lite"], ["fp32", "bf16"], [2]
        args.seconds_per_case, args.warmup, args.parity_images = 0.1, 1, 2
        args.big, args.max_batch, args.oom_images, args.oom_batch = (120, 160), 2, 2, 2
    report = Report(args.out)
    sections = args.sections.split(",")
    if "env" in sections:
        report.add("env", env(device))
    for name, step in (("model", model_only), ("parity", parity), ("fit12mp", fit12mp), ("oomcap", oomcap)):
        if name in sections:
            step(args, device, report)
    print(f"written: {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
