"""Cross-check ``bgcut eval`` against pysodmetrics, the field's reference implementation.

    pip install pysodmetrics==1.6.2        # only for this check; never a bgcut dependency
    bgcut eval -m MODEL --images SET/images --masks SET/masks --json --save-masks PRED
    python bench/pysod_check.py PRED SET/masks

Scores the saved masks two ways:

- **as written** (bgcut's convention: the 8-bit mask as bgcut writes it, ground truth > 127),
  which must give ``bgcut eval``'s MAE, S-measure and maxF. bgcut's maxF is the F-measure of the
  precision and recall averaged over images, maximised over the 256 thresholds; pysodmetrics
  reports that curve too (``pr``), and as its headline the maximum of the per-image F averaged
  over images, which is lower where a model's errors vary from image to image.
- **min-max normalised** (pysodmetrics' default, MATLAB's ``mapminmax``: each mask stretched to
  0..1 before scoring), the convention of most published tables.
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import numpy as np
from PIL import Image


def score(pred_dir: Path, gt_dir: Path, normalise: bool) -> dict[str, float]:
    import py_sod_metrics as sod

    warnings.simplefilter("ignore")  # Fmeasure's own note that FmeasureV2 will replace it
    fm, mae, sm = sod.Fmeasure(), sod.MAE(), sod.Smeasure()
    for gt_path in sorted(gt_dir.glob("*.png")):
        gt = np.array(Image.open(gt_path).convert("L"))
        pred = np.array(Image.open(pred_dir / gt_path.name).convert("L"))
        as_written = {"pred": pred / 255.0, "gt": gt > 127, "normalize": False}
        args = {"pred": pred, "gt": gt} if normalise else as_written
        for metric in (fm, mae, sm):
            metric.step(**args)
    f = fm.get_results()
    p, r = f["pr"]["p"], f["pr"]["r"]
    return {
        "maxF (F of mean P, R: bgcut's)": float((1.3 * p * r / np.maximum(0.3 * p + r, 1e-12)).max()),
        "maxF (mean per-image F: pysodmetrics')": float(f["fm"]["curve"].max()),
        "mae": float(mae.get_results()["mae"]),
        "s_measure": float(sm.get_results()["sm"]),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("pred", type=Path, help="masks saved by bgcut eval --save-masks")
    ap.add_argument("gt", type=Path, help="the ground-truth masks")
    args = ap.parse_args()
    out = {how: score(args.pred, args.gt, how == "min-max normalised") for how in ("as written", "min-max normalised")}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
