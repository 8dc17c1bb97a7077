"""bgcut's side-by-side benchmark harness: end to end vs rembg and a naive loop, and model-only.

Every tool runs as its own process on the same folder, one after the other, in one run;
each measurement is the whole process (start-up and model loading included), as a user
would time it. Reported per run: images/s (median of the repeats), peak RSS of the whole
process tree (sum over processes, sampled every 100 ms), the largest single process's peak
RSS, and CPU utilisation (user + system time of the tree / wall time / cores).

    python bench/run.py prepare                         # scenario folders under bench/data
    python bench/run.py e2e --scenario a --tools bgcut,bgcut-isnet,rembg-isnet,naive-isnet
    python bench/run.py model --models bgcut-lite,isnet-general --batch 1,4,8
    python bench/run.py agree OUT_A OUT_B               # IoU at 0.5 and MAE of two mask folders

rembg is not a bgcut dependency: it lives in its own virtual environment,
``python -m venv bench/.venv-rembg && bench/.venv-rembg/bin/pip install "rembg[cpu,cli]"``,
and runs the IS-Net reference weights, which must lie inside ``~/.rembg``:
``../shared/scripts/get-isnet-onnx ~/.rembg/isnet.onnx``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "data"
DATA = HERE / "data"
REMBG = HERE / ".venv-rembg" / "bin" / "rembg"
ISNET_ONNX = Path.home() / ".rembg" / "isnet.onnx"

# Scenario folders: name -> (source glob, count, target megapixels or None to keep the size).
SCENARIOS = {
    "a": ("eval/davis16/images/*.jpg", 138, None),  # 854x480 = 0.41 MP, as shot
    "a30": ("eval/davis16/images/*.jpg", 30, None),  # a subset, for the 1024 px IS-Net runs (~2 s per image)
    "b2": ("eval/davis16/images/*.jpg", 12, 2.0),
    "b12": ("eval/davis16/images/*.jpg", 6, 12.0),
    "c-small": ("duts-tr/images/*.jpg", 300, None),  # ~0.12 MP each, ~36 MP in all
    "c-huge": ("eval/human-seg/images/*", 3, 12.0),  # 3 x 12 MP = 36 MP in all
}


def prepare(args: argparse.Namespace) -> None:
    for name, (pattern, count, mp) in SCENARIOS.items():
        folder = DATA / name
        if folder.exists() and len(list(folder.iterdir())) == count:
            continue
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        found = sorted(SHARED.glob(pattern))
        sources = found[:: max(1, len(found) // count)][:count]  # spread over the set's videos/scenes
        for src in sources:
            im = Image.open(src).convert("RGB")
            if mp is not None:
                scale = (mp * 1e6 / (im.width * im.height)) ** 0.5
                im = im.resize((round(im.width * scale), round(im.height * scale)), Image.LANCZOS)
            im.save(folder / f"{src.stem}.jpg", quality=92)
        print(f"{folder}: {count} images, {im.width}x{im.height} (last)")


# --- measuring one process tree ---------------------------------------------------------------


def _children(pid: int) -> list[int]:
    out = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out += [int(c) for c in f.read().split()]
    except OSError:
        pass
    return out


def _status_kib(pid: int, field: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


@dataclass
class Measure:
    seconds: float
    tree_rss_mib: float
    max_proc_rss_mib: float
    cpu_util: float
    returncode: int


def measure(cmd: list[str], env: dict[str, str] | None = None) -> Measure:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    peak_tree = peak_proc = 0
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    done = threading.Event()

    def sample() -> None:
        nonlocal peak_tree, peak_proc
        while not done.is_set():
            pids, stack = [], [proc.pid]
            while stack:
                p = stack.pop()
                pids.append(p)
                stack += _children(p)
            # The tree's sum is sampled; each process's own peak comes exact from the kernel (VmHWM).
            peak_tree = max(peak_tree, sum(_status_kib(p, "VmRSS:") for p in pids))
            peak_proc = max(peak_proc, max(_status_kib(p, "VmHWM:") for p in pids))
            done.wait(0.1)  # sampling costs CPU on the machine being measured: 10 Hz, not more

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, err = proc.communicate()
    seconds = time.perf_counter() - t0
    done.set()
    sampler.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        print(f"  ! {' '.join(cmd[:4])}... exit {proc.returncode}: {err.decode()[-500:]}", file=sys.stderr)
    return Measure(seconds, peak_tree / 1024, peak_proc / 1024, cpu / seconds / (os.cpu_count() or 1), proc.returncode)


# --- the tools --------------------------------------------------------------------------------


def tool_command(tool: str, src: Path, dst: Path, fmt: str, workers: int | None, batch: int | None = None) -> list[str]:
    py = sys.executable
    engine = (["-j", str(workers)] if workers is not None else []) + (["-b", str(batch)] if batch is not None else [])
    if tool == "pipeline":  # bgcut with a near-free model: the host's decode + encode capacity
        cmd = [py, "-m", "bgcut", str(src), "-o", str(dst), "--format", fmt, "-w", str(_luma_weights()), "-q"]
        return cmd + engine
    if tool.startswith("bgcut"):
        model = {"bgcut": "bgcut-lite", "bgcut-isnet": "isnet-general", "bgcut-isnet-bf16": "isnet-general"}[tool]
        cmd = [py, "-m", "bgcut", str(src), "-o", str(dst), "--format", fmt, "--model", model, "-q"]
        if tool.endswith("bf16"):
            cmd += ["--precision", "bf16"]
        return cmd + engine
    if tool == "rembg-isnet":
        extra = json.dumps({"model_path": str(ISNET_ONNX)})
        only_mask = ["-om"] if fmt == "mask" else []
        return [str(REMBG), "p", "-m", "dis_custom", "-x", extra, *only_mask, str(src), str(dst)]
    if tool.startswith("naive"):
        model = {"naive": "bgcut-lite", "naive-isnet": "isnet-general"}[tool]
        return [py, str(HERE / "naive.py"), str(src), str(dst), "--model", model, "--format", fmt]
    raise SystemExit(f"unknown tool {tool!r}")


def _luma_weights() -> Path:
    """The test suite's ``luma_test`` model at 256 px: mask = sigmoid of brightness, no convolutions."""
    folder = DATA / "luma"
    if not (folder / "config.json").exists():
        import torch
        from safetensors.torch import save_file

        folder.mkdir(parents=True, exist_ok=True)
        save_file({"scale": torch.tensor(40.0), "offset": torch.tensor(0.5)}, str(folder / "model.safetensors"))
        config = {"name": "luma", "arch": "luma_test", "input_size": 256, "mean": [0, 0, 0], "std": [1, 1, 1]}
        (folder / "config.json").write_text(json.dumps({**config, "output": "sigmoid"}))
    return folder


def e2e(args: argparse.Namespace) -> None:
    src = DATA / args.scenario
    files = sorted(src.iterdir())
    n = len(files)
    mp = sum(Image.open(f).width * Image.open(f).height for f in files) / 1e6
    print(f"# scenario {args.scenario}: {n} images, {mp:.1f} MP in all; {platform.node()}, {os.cpu_count()} cores")
    print("| tool | format | images/s (median) | runs (s) | peak RSS tree MiB | max process MiB | CPU util |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    out = Path(tempfile.mkdtemp(prefix="bgcut-bench-"))
    for fmt in args.formats.split(","):
        for tool in args.tools.split(","):
            runs = []
            for _ in range(args.repeats):
                shutil.rmtree(out, ignore_errors=True)
                runs.append(measure(tool_command(tool, src, out, fmt, args.workers, args.batch_size)))
            written = len(list(out.rglob("*.png")))
            med = statistics.median(r.seconds for r in runs)
            peak = max(r.tree_rss_mib for r in runs)
            proc = max(r.max_proc_rss_mib for r in runs)
            util = statistics.median(r.cpu_util for r in runs)
            secs = ", ".join(f"{r.seconds:.1f}" for r in runs)
            flag = "" if written == n and all(r.returncode == 0 for r in runs) else f" (wrote {written}/{n}!)"
            cells = [f"{tool}{flag}", fmt, f"{n / med:.3f}", secs, f"{peak:.0f}", f"{proc:.0f}", f"{util:.0%}"]
            print("| " + " | ".join(cells) + " |", flush=True)
            if args.keep:
                keep = Path(args.keep) / f"{args.scenario}-{tool}-{fmt}"
                shutil.rmtree(keep, ignore_errors=True)
                shutil.copytree(out, keep)
            if args.json:
                with open(args.json, "a") as f:
                    rows = [asdict(r) for r in runs]
                    f.write(json.dumps({"scenario": args.scenario, "tool": tool, "format": fmt, "n": n, "runs": rows}))
                    f.write("\n")
    shutil.rmtree(out, ignore_errors=True)


def model_only(args: argparse.Namespace) -> None:
    import torch

    from bgcut.devices import pick_dtype
    from bgcut.models import create_model
    from bgcut.pipeline.infer import Predictor

    print(f"# model only: uint8 tensor at the model's size in, [0,1] mask out; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")  # fmt: skip
    print("| model | precision | batch | images/s | seconds per batch (median) |")
    print("| --- | --- | --- | --- | --- |")
    for name in args.models.split(","):
        loaded = create_model(name)
        for precision in args.precision.split(","):
            predictor = Predictor(loaded, torch.device("cpu"), pick_dtype(precision, torch.device("cpu")))
            for b in (int(x) for x in args.batch.split(",")):
                x = torch.randint(0, 256, (b, 3, predictor.size, predictor.size), dtype=torch.uint8)
                predictor(x)  # warm-up: first-call allocations and oneDNN primitive creation
                times = []
                t_end = time.perf_counter() + args.seconds
                while time.perf_counter() < t_end or len(times) < 3:
                    t0 = time.perf_counter()
                    predictor(x)
                    times.append(time.perf_counter() - t0)
                med = statistics.median(times)
                print(f"| {name} | {precision} | {b} | {b / med:.2f} | {med:.3f} |", flush=True)


def agree(args: argparse.Namespace) -> None:
    ious, maes = [], []
    for a in sorted(Path(args.a).rglob("*.png")):
        b = Path(args.b) / a.relative_to(args.a)
        ma = np.asarray(Image.open(a))
        mb = np.asarray(Image.open(b))
        ma = ma[..., 3] if ma.ndim == 3 else ma
        mb = mb[..., 3] if mb.ndim == 3 else mb
        fa, fb = ma >= 128, mb >= 128
        union = (fa | fb).sum()
        ious.append((fa & fb).sum() / union if union else 1.0)
        maes.append(np.abs(ma.astype(np.int16) - mb.astype(np.int16)).mean() / 255)
    print(f"{len(ious)} masks: IoU@0.5 mean {np.mean(ious):.4f}, min {np.min(ious):.4f}; MAE mean {np.mean(maes):.4f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("prepare", help="generate the scenario folders under bench/data")
    p = sub.add_parser("e2e", help="end to end, whole processes, side by side")
    p.add_argument("--scenario", choices=list(SCENARIOS), default="a")
    p.add_argument("--tools", default="bgcut,naive,bgcut-isnet,rembg-isnet,naive-isnet")
    p.add_argument("--formats", default="png-alpha,mask")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--workers", type=int, default=None, help="bgcut -j (default: bgcut's own)")
    p.add_argument("--batch-size", type=int, default=None, help="bgcut -b (default: bgcut's own)")
    p.add_argument("--keep", default=None, help="copy each tool's outputs here (for `agree`)")
    p.add_argument("--json", default=None, help="append raw runs as JSON lines")
    p = sub.add_parser("model", help="model-only throughput")
    p.add_argument("--models", default="bgcut-lite,isnet-general")
    p.add_argument("--batch", default="1,4,8")
    p.add_argument("--precision", default="fp32")
    p.add_argument("--seconds", type=float, default=10.0)
    p = sub.add_parser("agree", help="IoU and MAE between two folders of masks or RGBA cut-outs")
    p.add_argument("a")
    p.add_argument("b")
    args = ap.parse_args()
    {"prepare": prepare, "e2e": e2e, "model": model_only, "agree": agree}[args.cmd](args)


if __name__ == "__main__":
    main()
