"""Mask quality metrics and the evaluation loop behind ``bgcut eval``.

The MAE, maxF and IoU definitions follow the salient-object protocol used by
the shared evaluation set's ``evalmask`` script (predictions as 8-bit masks scaled to [0, 1]; ground
truth binarised at 0.5; precision/recall curves over 256 thresholds averaged per image
before the F-measure with beta^2 = 0.3 is maximised), so the two agree on the same
predictions. S-measure is Fan et al., ICCV 2017 (alpha = 0.5).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

_EPS = 1e-8
BETA2 = 0.3


@dataclass(frozen=True)
class EvalResult:
    n: int
    mae: float
    maxF: float  # noqa: N815 - the metric's usual name
    mIoU: float  # noqa: N815
    s_measure: float
    missing: int = 0

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)

    def line(self) -> str:
        return f"n={self.n} MAE={self.mae:.4f} maxF={self.maxF:.4f} mIoU={self.mIoU:.4f} S={self.s_measure:.4f}"


class MaskMetrics:
    """Accumulates per-image metrics; ``update`` takes a [0, 1] float or uint8 prediction."""

    def __init__(self) -> None:
        self.maes: list[float] = []
        self.ious: list[float] = []
        self.smeasures: list[float] = []
        self.prec_sum = np.zeros(256)
        self.rec_sum = np.zeros(256)
        self.missing = 0

    def update(self, pred: np.ndarray, gt: np.ndarray) -> None:
        if pred.dtype == np.uint8:
            pred = pred.astype(np.float32) / 255.0
        pred = pred.astype(np.float32)
        gtb = gt > 127 if gt.dtype == np.uint8 else gt > 0.5
        if pred.shape != gtb.shape:
            raise ValueError(f"prediction {pred.shape} and ground truth {gtb.shape} differ in size")
        self.maes.append(float(np.abs(pred - gtb).mean()))
        pb = pred >= 0.5
        union = np.logical_or(pb, gtb).sum()
        self.ious.append(1.0 if union == 0 else float(np.logical_and(pb, gtb).sum() / union))
        # Cumulative counts from the top threshold down: tp[t] = #fg pixels with pred >= t.
        tp = np.histogram(pred[gtb], bins=256, range=(0, 1))[0][::-1].cumsum()[::-1].astype(np.float64)
        fp = np.histogram(pred[~gtb], bins=256, range=(0, 1))[0][::-1].cumsum()[::-1].astype(np.float64)
        self.prec_sum += tp / np.maximum(tp + fp, _EPS)
        self.rec_sum += tp / max(float(gtb.sum()), _EPS)
        self.smeasures.append(s_measure(pred, gtb))

    def compute(self) -> EvalResult:
        n = len(self.maes)
        if n == 0:
            return EvalResult(0, float("nan"), float("nan"), float("nan"), float("nan"), self.missing)
        p, r = self.prec_sum / n, self.rec_sum / n
        f = (1 + BETA2) * p * r / np.maximum(BETA2 * p + r, _EPS)
        return EvalResult(
            n=n,
            mae=float(np.mean(self.maes)),
            maxF=float(f.max()),
            mIoU=float(np.mean(self.ious)),
            s_measure=float(np.mean(self.smeasures)),
            missing=self.missing,
        )


def _object_score(x: np.ndarray, region: np.ndarray) -> float:
    vals = x[region]
    if vals.size == 0:
        return 0.0
    mean = float(vals.mean())
    std = float(vals.std(ddof=1)) if vals.size > 1 else 0.0
    return 2.0 * mean / (mean * mean + 1.0 + std + _EPS)


def _ssim(pred: np.ndarray, gt: np.ndarray) -> float:
    n = pred.size
    if n < 2:
        return 1.0 if n == 0 else float(1.0 - abs(pred.mean() - gt.mean()))
    x, y = float(pred.mean()), float(gt.mean())
    sx = float(((pred - x) ** 2).sum() / (n - 1))
    sy = float(((gt - y) ** 2).sum() / (n - 1))
    sxy = float(((pred - x) * (gt - y)).sum() / (n - 1))
    alpha = 4 * x * y * sxy
    beta = (x * x + y * y) * (sx + sy)
    if alpha != 0:
        return alpha / (beta + _EPS)
    return 1.0 if beta == 0 else 0.0


def s_measure(pred: np.ndarray, gt: np.ndarray, alpha: float = 0.5) -> float:
    """Structure measure of a [0, 1] prediction against a boolean mask."""
    y = float(gt.mean())
    if y == 0:
        return 1.0 - float(pred.mean())
    if y == 1:
        return float(pred.mean())
    gtf = gt.astype(np.float32)
    s_obj = y * _object_score(pred, gt) + (1 - y) * _object_score(1 - pred, ~gt)
    h, w = gt.shape
    rows, cols = np.nonzero(gt)
    cy, cx = int(round(rows.mean())) + 1, int(round(cols.mean())) + 1
    cy, cx = min(cy, h), min(cx, w)
    area = h * w
    quads = [
        (slice(0, cy), slice(0, cx)),
        (slice(0, cy), slice(cx, w)),
        (slice(cy, h), slice(0, cx)),
        (slice(cy, h), slice(cx, w)),
    ]
    s_reg = 0.0
    for rs, cs in quads:
        p, g = pred[rs, cs], gtf[rs, cs]
        if p.size:
            s_reg += p.size / area * _ssim(p, g)
    return max(0.0, alpha * s_obj + (1 - alpha) * s_reg)


def load_mask(path: Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """Read a mask (L, or the alpha of an RGBA/LA cut-out) as uint8, resized to ``size`` if given."""
    with Image.open(path) as im:
        im = im.getchannel("A") if im.mode in ("RGBA", "LA") else im.convert("L")
        if size is not None and im.size != size:
            im = im.resize(size, Image.BILINEAR)
        return np.asarray(im, dtype=np.uint8)


def score_folder(pred_dir: Path, gt_dir: Path) -> EvalResult:
    """Score every ``*.png`` ground-truth mask in ``gt_dir`` against the prediction of the same stem.

    A missing prediction counts as an empty mask (as in evalmask), and is counted in ``missing``.
    """
    preds: dict[str, Path] = {}
    for p in sorted(Path(pred_dir).rglob("*")):
        if p.is_file():
            preds.setdefault(p.stem, p)
    metrics = MaskMetrics()
    for g in sorted(Path(gt_dir).glob("*.png")):
        gt = load_mask(g)
        if g.stem in preds:
            pred = load_mask(preds[g.stem], (gt.shape[1], gt.shape[0]))
        else:
            metrics.missing += 1
            pred = np.zeros_like(gt)
        metrics.update(pred, gt)
    return metrics.compute()


def evaluate(
    images: Path,
    masks: Path,
    model: str | None = None,
    weights: str | None = None,
    save_masks: Path | None = None,
    **run_kwargs: object,
) -> EvalResult:
    """Run a model over ``images`` through the normal pipeline (format ``mask``) and score the result.

    The masks are written (to ``save_masks``, or a temporary folder) exactly as users get
    them, so the scores describe what bgcut produces, and ``evalmask`` can cross-check them.
    """
    import tempfile

    from .config import OutputOptions, RunOptions
    from .pipeline.run import remove_backgrounds

    with tempfile.TemporaryDirectory(prefix="bgcut-eval-") as tmp:
        out = Path(save_masks) if save_masks else Path(tmp)
        run = RunOptions(model=model, weights=weights, overwrite=True, **run_kwargs)  # type: ignore[arg-type]
        remove_backgrounds([str(images)], out, run, OutputOptions(format="mask"), progress=False, log=lambda _m: None)
        return score_folder(out, masks)
