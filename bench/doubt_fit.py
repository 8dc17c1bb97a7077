"""Fit and check the doubt score (``bgcut/pipeline/doubt.py``) on labelled sets.

    bgcut eval -m MODEL --images SET/images --masks SET/masks --save-masks PRED/SET   # per set and model
    python bench/doubt_fit.py --set davis16 SET/masks PRED_A/davis16 PRED_B/davis16 \
                              --set human-seg SET2/masks PRED_A/human-seg PRED_B/human-seg [--fit]

For every predicted mask: its doubt and parts (from the mask alone) and its true MAE against the
ground truth. Prints, per set and prediction folder, the Spearman correlation between doubt and
MAE, and how many of the worst 10% by MAE are in the top 10% by doubt (chance: 10%). ``--fit``
first searches the weights on a grid for the best mean Spearman over all folders given, and
reports with those (write them into ``WEIGHTS`` by hand).
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np
from PIL import Image

from bgcut.pipeline import doubt


def _ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(len(x))
    # average ranks for ties
    for value in np.unique(x):
        where = x == value
        if where.sum() > 1:
            ranks[where] = ranks[where].mean()
    return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = _ranks(a), _ranks(b)
    return float(np.corrcoef(ra, rb)[0, 1])


def top_overlap(score: np.ndarray, mae: np.ndarray, share: float = 0.1) -> tuple[int, int]:
    k = max(1, round(len(mae) * share))
    worst = set(np.argsort(-mae, kind="stable")[:k])
    doubted = set(np.argsort(-score, kind="stable")[:k])
    return len(worst & doubted), k


def load(gt_dir: Path, pred_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """(N, 4) measures and (N,) MAE for every ground-truth mask with a prediction."""
    parts, maes = [], []
    for gt_path in sorted(gt_dir.glob("*.png")):
        pred_path = pred_dir / gt_path.name
        if not pred_path.is_file():
            continue
        gt = np.asarray(Image.open(gt_path).convert("L")) > 127
        pred = np.asarray(Image.open(pred_path).convert("L"))
        d = doubt.measure(pred)
        parts.append([d.unsure, d.frame, d.pieces, d.extent])
        maes.append(float(np.abs(pred / 255.0 - gt).mean()))
    return np.array(parts), np.array(maes)


def scores(parts: np.ndarray, weights: dict[str, float]) -> np.ndarray:
    w = np.array([weights[k] for k in ("unsure", "frame", "pieces", "extent")])
    return parts @ w / w.sum()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--set", nargs="+", action="append", required=True, metavar=("NAME GT", "PRED"))
    ap.add_argument("--fit", action="store_true")
    ap.add_argument("--weights", help="unsure,frame,pieces,extent to report with instead of doubt.WEIGHTS")
    args = ap.parse_args()
    data = {}
    for name, gt, *preds in args.set:
        for pred in preds:
            data[(name, pred)] = load(Path(gt), Path(pred))
    weights = dict(doubt.WEIGHTS)
    if args.weights:
        weights = dict(zip(("unsure", "frame", "pieces", "extent"), map(float, args.weights.split(",")), strict=True))
    if args.fit:
        grid = (0.0, 0.25, 0.5, 1.0, 2.0)
        best = (-2.0, weights)
        for combo in itertools.product(grid, repeat=4):
            if not any(combo):
                continue
            w = dict(zip(("unsure", "frame", "pieces", "extent"), combo, strict=True))
            mean = float(np.mean([spearman(scores(p, w), m) for p, m in data.values()]))
            if mean > best[0]:
                best = (mean, w)
        weights = best[1]
        print(f"fitted weights (mean Spearman {best[0]:.3f}): {weights}")
    print("| set | masks | n | Spearman(doubt, MAE) | worst 10% by MAE in the top 10% by doubt |")
    print("| --- | --- | --- | --- | --- |")
    for (name, pred), (parts, mae) in data.items():
        s = scores(parts, weights)
        hit, k = top_overlap(s, mae)
        each = ", ".join(
            f"{key} {spearman(parts[:, i], mae):.2f}" for i, key in enumerate(("unsure", "frame", "pieces", "extent"))
        )
        print(f"| {name} | {pred} | {len(mae)} | {spearman(s, mae):.3f} ({each}) | {hit} of {k} |")


if __name__ == "__main__":
    main()
