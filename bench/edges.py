"""Edge refinement and foreground colour: quality and time of each candidate (issue 18).

    python bench/edges.py masks  [--models bgcut-lite,isnet-general]   # raw masks, once (slow for IS-Net)
    python bench/edges.py refine [--models ...] [--sets davis16,human-seg] [--matting --limit 20]
    python bench/edges.py colour [--sets ...]
    python bench/edges.py timing
    python bench/edges.py sheet OUT.png --model bgcut-lite --set human-seg [--refine guided] [--names a,b]

``masks`` writes each model's unrefined masks (``bgcut --format mask --refine none``) under
bench/data/edges/MODEL/SET. ``refine`` applies each refinement setting to those masks against
the full-size photos, exactly as ``postprocess.render`` does (``edges.refine_edges``), and
scores them like ``bgcut eval`` (MAE, maxF, boundary MAE) with the seconds per megapixel of the
step. ``colour`` runs ``bgcut.evaluate.evaluate_colour``'s composite test for each foreground
estimator (blur fusion at several radii, and pymatting's ``estimate_foreground_ml`` when it is
installed). ``sheet`` draws zoomed before/after crops around the edges, for looking at.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from bgcut.evaluate import MaskMetrics, load_mask
from bgcut.images import open_named
from bgcut.pipeline import edges

HERE = Path(__file__).resolve().parent
EVAL = HERE.parent.parent / "shared" / "data" / "eval"
BACKGROUNDS = HERE.parent.parent / "shared" / "data" / "backgrounds"
RAW = HERE / "data" / "edges"
MODEL_SIZE = {"bgcut-lite": 256, "isnet-general": 1024}


def _pairs(dataset: str, model: str | None = None) -> list[tuple[Path, Path]]:
    """(photo, ground truth) pairs by name; with ``model``, only those whose raw mask was made."""
    images = {p.stem: p for p in (EVAL / dataset / "images").iterdir()}
    pairs = [(images[g.stem], g) for g in sorted((EVAL / dataset / "masks").glob("*.png")) if g.stem in images]
    if model is not None:
        pairs = [(img, gt) for img, gt in pairs if (RAW / model / dataset / f"{img.stem}.png").is_file()]
    return pairs


def make_masks(models: list[str], sets: list[str]) -> None:
    for model in models:
        for dataset in sets:
            out = RAW / model / dataset
            cmd = [sys.executable, "-m", "bgcut", str(EVAL / dataset / "images"), "-o", str(out)]
            subprocess.run([*cmd, "--format", "mask", "--refine", "none", "-m", model, "-q"], check=True)


def _guided(k: float, samples: float, eps: float):  # noqa: ANN202 - a small closure factory
    def run(photo: np.ndarray, mask: np.ndarray, model_size: int) -> np.ndarray:
        return edges.refine_edges(photo, mask, model_size, "guided", eps, radius_px=k, samples=samples)

    return run


def _matting(photo: np.ndarray, mask: np.ndarray, model_size: int) -> np.ndarray:
    return edges.refine_edges(photo, mask, model_size, "matting", 1e-3)


def refine(models: list[str], sets: list[str], matting: bool = False, limit: int | None = None) -> None:
    variants = {"none": None}
    if matting:  # seconds per image: compared with "none" alone, on the first `limit` pictures
        variants["matting"] = _matting
    else:
        for k in (1.0, 2.0, 4.0):
            for eps in (1e-4, 1e-3, 1e-2):
                variants[f"guided k={k:g} eps={eps:g}"] = _guided(k, edges.GUIDED_SAMPLES, eps)
        variants["guided k=2 eps=1e-3 samples=1"] = _guided(2.0, 1.0, 1e-3)
        variants["guided k=2 eps=1e-3 samples=4"] = _guided(2.0, 4.0, 1e-3)
    for model in models:
        for dataset in sets:
            pairs = _pairs(dataset, model)[:limit]
            loaded = [
                (open_named(img).rgb, load_mask(RAW / model / dataset / f"{img.stem}.png"), load_mask(gt))
                for img, gt in pairs
            ]
            mp = sum(p.shape[0] * p.shape[1] for p, _, _ in loaded) / 1e6
            for name, step in variants.items():
                metrics, seconds = MaskMetrics(), 0.0
                for photo, raw, gt in loaded:
                    t = time.perf_counter()
                    mask = raw if step is None else step(photo, raw, MODEL_SIZE[model])
                    seconds += time.perf_counter() - t
                    metrics.update(mask, gt)
                r = metrics.compute()
                row = {"model": model, "set": dataset, "variant": name, "n": r.n, "mae": round(r.mae, 4)}
                row |= {"maxF": round(r.maxF, 4), "boundary_mae": round(r.boundary_mae, 4)}
                row["s_per_mp"] = round(seconds / mp, 4)
                print(json.dumps(row), flush=True)


def timing() -> None:
    """Seconds per megapixel of each step alone, on davis16 frames (0.41 MP) with bgcut-lite's masks,
    and on one 12 MP photo (a frame upscaled 4.2x: the mask stretched 16x)."""
    pairs = _pairs("davis16", "bgcut-lite")[:40]
    frames = [(open_named(img).rgb, load_mask(RAW / "bgcut-lite" / "davis16" / f"{img.stem}.png")) for img, _ in pairs]
    big_photo = cv2.resize(frames[0][0], (4000, 2250), interpolation=cv2.INTER_CUBIC)
    big_mask = cv2.resize(frames[0][1], (4000, 2250), interpolation=cv2.INTER_LINEAR)
    steps = {
        "guided": lambda p, m: edges.refine_edges(p, m, 256, "guided", 1e-3),
        "decontaminate": lambda p, m: edges.decontaminate(p, m, 256),
        "decontaminate (every partial pixel)": lambda p, m: edges.estimate_foreground(p, m),
    }
    for name, step in steps.items():
        for label, items in (("davis16 x40", frames), ("12 MP x1", [(big_photo, big_mask)])):
            mp = sum(p.shape[0] * p.shape[1] for p, _ in items) / 1e6
            step(*items[0])  # warm caches and OpenCV's thread pool
            t = time.perf_counter()
            for p, m in items:
                step(p, m)
            seconds = time.perf_counter() - t
            print(
                json.dumps(
                    {
                        "step": name,
                        "on": label,
                        "s_per_mp": round(seconds / mp, 4),
                        "ms_per_image": round(1000 * seconds / len(items), 1),
                    }
                )
            )


def colour(sets: list[str]) -> None:
    from bgcut.evaluate import evaluate_colour

    estimators = {f"blur-fusion {r}": r for r in ((90, 6), (30, 6), (30, 3), (15, 3), (90, 6, 3))}
    try:
        from pymatting import estimate_foreground_ml
    except ImportError:
        estimate_foreground_ml = None
    for dataset in sets:
        for name, radii in estimators.items():
            t = time.perf_counter()
            r = evaluate_colour(
                EVAL / dataset / "images",
                EVAL / dataset / "masks",
                BACKGROUNDS,
                estimator=lambda photo, alpha, radii=radii: edges.estimate_foreground(photo, alpha, radii),
            )
            print(
                json.dumps({"set": dataset, "estimator": name, **r.to_dict(), "s": round(time.perf_counter() - t, 1)})
            )
        if estimate_foreground_ml is not None:

            def ml(photo: np.ndarray, alpha: np.ndarray) -> np.ndarray:
                f = estimate_foreground_ml(photo / 255.0, alpha / 255.0)
                out = np.clip(f * 255 + 0.5, 0, 255).astype(np.uint8)
                partial = (alpha > 0) & (alpha < 255)
                res = photo.copy()
                res[partial] = out[partial]
                return res

            t = time.perf_counter()
            r = evaluate_colour(EVAL / dataset / "images", EVAL / dataset / "masks", BACKGROUNDS, estimator=ml)
            row = {"set": dataset, "estimator": "pymatting estimate_foreground_ml", **r.to_dict()}
            print(json.dumps({**row, "s": round(time.perf_counter() - t, 1)}))


def on_grey(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """A cut-out pasted on mid grey, where halos and cut edges show."""
    a = alpha[..., None].astype(np.float32) / 255
    return (a * rgb + (1 - a) * 128.0 + 0.5).astype(np.uint8)


def sheet(target: Path, model: str, dataset: str, method: str, names: list[str] | None, eps: float) -> None:
    """Rows of [photo crop | cut-out on grey, unrefined | refined | refined + colour], 3x zoom."""
    pairs = _pairs(dataset, model)
    if names:
        pairs = [p for p in pairs if p[0].stem in names]
    rows = []
    for img, _gt in pairs[:6]:
        photo = open_named(img).rgb
        raw = load_mask(RAW / model / dataset / f"{img.stem}.png")
        refined = edges.refine_edges(photo, raw, MODEL_SIZE[model], method, eps)
        decont = edges.decontaminate(photo, refined, MODEL_SIZE[model])
        # The window: the part of the edge band with the most partial alpha.
        partial = ((refined > 10) & (refined < 245)).astype(np.float32)
        score = cv2.blur(partial, (61, 61))
        y, x = np.unravel_index(int(np.argmax(score)), score.shape)
        y0, x0 = max(0, min(y - 40, photo.shape[0] - 80)), max(0, min(x - 60, photo.shape[1] - 120))
        window = (slice(y0, y0 + 80), slice(x0, x0 + 120))
        tiles = [photo, on_grey(photo, raw), on_grey(photo, refined), on_grey(decont, refined)]
        crops = [cv2.resize(t[window], None, fx=3, fy=3, interpolation=cv2.INTER_NEAREST) for t in tiles]
        rows.append(np.hstack([np.pad(c, ((2, 2), (2, 2), (0, 0)), constant_values=255) for c in crops]))
    Image.fromarray(np.vstack(rows)).save(target)
    print(f"{target}: {len(rows)} rows: photo | unrefined | --refine {method} | + --decontaminate")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cmd", choices=["masks", "refine", "colour", "timing", "sheet"])
    parser.add_argument("target", nargs="?", type=Path)
    parser.add_argument("--models", default="bgcut-lite,isnet-general")
    parser.add_argument("--sets", default="davis16,human-seg")
    parser.add_argument("--model", default="bgcut-lite")
    parser.add_argument("--set", default="human-seg")
    parser.add_argument("--refine", default="guided")
    parser.add_argument("--eps", type=float, default=1e-3)
    parser.add_argument("--names", default=None)
    parser.add_argument("--matting", action="store_true", help="refine: closed-form matting against none")
    parser.add_argument("--limit", type=int, default=None, help="refine: the first N pictures of each set")
    args = parser.parse_args()
    models, sets = args.models.split(","), args.sets.split(",")
    if args.cmd == "masks":
        make_masks(models, sets)
    elif args.cmd == "refine":
        refine(models, sets, args.matting, args.limit)
    elif args.cmd == "colour":
        colour(sets)
    elif args.cmd == "timing":
        timing()
    else:
        sheet(args.target, args.model, args.set, args.refine, args.names.split(",") if args.names else None, args.eps)


if __name__ == "__main__":
    main()
