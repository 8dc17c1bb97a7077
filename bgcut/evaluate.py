"""Mask quality metrics and the evaluation loop behind ``bgcut eval``.

The MAE, maxF and IoU definitions follow the salient-object protocol used by
the shared evaluation set's ``evalmask`` script (predictions as 8-bit masks scaled to [0, 1]; ground
truth binarised at 0.5; precision/recall curves over 256 thresholds averaged per image
before the F-measure with beta^2 = 0.3 is maximised), so the two agree on the same
predictions. S-measure is Fan et al., ICCV 2017 (alpha = 0.5). The boundary MAE is bgcut's
own: the MAE inside a band of ``BAND`` px around the ground truth's edge.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
from PIL import Image

from .errors import IncompleteEvaluationError, UsageError

if TYPE_CHECKING:
    from .config import PostOptions

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
    # Mean |prediction - ground truth| within BAND px of the ground truth's edge: where a mask is
    # cut, the whole-image MAE hardly moves; this does.
    boundary_mae: float = float("nan")

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)

    def line(self) -> str:
        missing = f" missing={self.missing} (scored as empty)" if self.missing else ""
        return (
            f"n={self.n} MAE={self.mae:.4f} maxF={self.maxF:.4f} mIoU={self.mIoU:.4f} S={self.s_measure:.4f} "
            f"boundary-MAE={self.boundary_mae:.4f}{missing}"
        )


class MaskMetrics:
    """Accumulates per-image metrics; ``update`` takes a [0, 1] float or uint8 prediction."""

    def __init__(self) -> None:
        self.maes: list[float] = []
        self.ious: list[float] = []
        self.smeasures: list[float] = []
        self.boundary: list[float] = []
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
        band = edge_band(gtb)
        if band.any():  # ground truth as given (soft where it is soft), inside the band
            soft = gt.astype(np.float32) / 255.0 if gt.dtype == np.uint8 else gt.astype(np.float32)
            self.boundary.append(float(np.abs(pred[band] - soft[band]).mean()))

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
            boundary_mae=float(np.mean(self.boundary)) if self.boundary else float("nan"),
        )


BAND = 5  # pixels on each side of the ground truth's edge


def edge_band(gtb: np.ndarray, width: int = BAND) -> np.ndarray:
    """The pixels within ``width`` px of a boolean mask's edge, on either side."""
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * width + 1, 2 * width + 1))
    return cv2.morphologyEx(gtb.astype(np.uint8), cv2.MORPH_GRADIENT, disk).astype(bool)


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


def _ground_truth(path: Path) -> np.ndarray:
    """One ground-truth mask; one that cannot be read stops the evaluation (scores without it, or
    with it taken as empty, would be wrong), in one line that names it."""
    try:
        return load_mask(path)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        # PIL raises OSError for a damaged or unknown file (UnidentifiedImageError too), SyntaxError
        # for some broken PNG chunks.
        reason = " ".join(str(e).split()) or type(e).__name__
        raise IncompleteEvaluationError(f"{path}: cannot read this ground-truth mask ({reason})") from None


def check_ground_truth(gt_dir: Path) -> None:
    """Every ground-truth mask of ``gt_dir`` can be read: checked before the model runs, which takes
    minutes on a large set, so that a damaged mask costs none of them."""
    for g in sorted(Path(gt_dir).glob("*.png")):
        _ground_truth(g)


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
        gt = _ground_truth(g)
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
    post: PostOptions | None = None,
    allow_missing: bool = False,
    **run_kwargs: object,
) -> EvalResult:
    """Run a model over ``images`` through the normal pipeline (format ``mask``, the post-processing
    of ``post``: the defaults, edge refinement included) and score the result.

    The masks are written (to ``save_masks``, or a temporary folder) exactly as users get
    them, so the scores describe what bgcut produces, and ``evalmask`` can cross-check them.

    Raises:
        IncompleteEvaluationError: some ground-truth masks have no prediction (no image of that
            stem, or the image failed), unless ``allow_missing`` scores them as empty masks; or
            a ground-truth mask cannot be read (checked before the model runs).
    """
    import tempfile

    from .config import OutputOptions, RunOptions
    from .run import remove_backgrounds

    check_ground_truth(masks)
    with tempfile.TemporaryDirectory(prefix="bgcut-eval-") as tmp:
        out = Path(save_masks) if save_masks else Path(tmp)
        run = RunOptions(model=model, weights=weights, overwrite=True, **run_kwargs)  # type: ignore[arg-type]
        fmt = OutputOptions(format="mask")
        summary = remove_backgrounds([str(images)], out, run, fmt, post, progress=False, log=lambda _m: None)
        result = score_folder(out, masks)
    if result.missing and not allow_missing:
        failed = sum(r.status == "failed" for r in summary.rows)
        why = (
            f"{failed} image(s) failed, the rest have no image of the same stem in {images}"
            if failed
            else (f"no image of the same stem in {images}")
        )
        raise IncompleteEvaluationError(
            f"{result.missing} of {result.n} ground-truth masks in {masks} have no prediction ({why}); "
            "scores over them would be wrong: pass --allow-missing to score them as empty masks"
        )
    return result


@dataclass(frozen=True)
class ColourResult:
    """Colour error of cut-outs pasted on a new background (0-255 levels, partial-alpha pixels)."""

    n: int
    kept: float  # the photo's colours kept under partial alpha (the old background comes along)
    estimated: float  # the foreground colour estimated (``edges.estimate_foreground``)

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)

    def line(self) -> str:
        return f"n={self.n} colour error: kept={self.kept:.2f} estimated={self.estimated:.2f} (levels of 255)"


def evaluate_colour(
    images: Path,
    masks: Path,
    backgrounds: Path,
    feather: float = 3.0,
    estimator: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> ColourResult:
    """Foreground colour estimation alone, on composites whose parts are known.

    For each labelled picture F with ground-truth mask M: a soft alpha ``a`` (M blurred with a
    Gaussian of sigma ``feather`` px), a background photo B and another B2 (``backgrounds``,
    covered to size). I = a F + (1 - a) B is cut out with the true ``a``, its colours either kept
    or estimated from I and ``a`` (by ``estimator``, default ``edges.estimate_foreground``), and
    pasted on B2; the error is the mean absolute difference from a F + (1 - a) B2 over the pixels
    with 0 < a < 1, per picture, then averaged.
    """
    from .images import cover, open_named
    from .pipeline.edges import estimate_foreground
    from .pipeline.reader import list_sources

    estimate = estimator or estimate_foreground
    backs = [open_named(Path(s.path)).rgb for s in list_sources([str(backgrounds)]).sources]
    if len(backs) < 2:
        raise UsageError(f"--colour {backgrounds}: needs at least two background photos")
    kept, estimated = [], []
    for i, g in enumerate(sorted(Path(masks).glob("*.png"))):
        pictures = [p for p in Path(images).glob(g.stem + ".*") if p.is_file()]
        if not pictures:
            continue
        fg = open_named(pictures[0]).rgb
        h, w = fg.shape[:2]
        gt = load_mask(g, (w, h))
        alpha_u8 = cv2.GaussianBlur(np.where(gt > 127, 255, 0).astype(np.uint8), (0, 0), feather)
        a = alpha_u8.astype(np.float32)[:, :, None] / 255.0
        b1 = cover(backs[i % len(backs)], w, h).astype(np.float32)
        b2 = cover(backs[(i + 1) % len(backs)], w, h).astype(np.float32)
        photo = np.clip(a * fg + (1 - a) * b1 + 0.5, 0, 255).astype(np.uint8)
        want = a * fg + (1 - a) * b2
        band = (alpha_u8 > 0) & (alpha_u8 < 255)
        if not band.any():
            continue
        for colours, errors in ((photo, kept), (estimate(photo, alpha_u8), estimated)):
            pasted = a * colours.astype(np.float32) + (1 - a) * b2
            errors.append(float(np.abs(pasted - want)[band].mean()))
    if not kept:
        raise UsageError(f"{masks}: no mask with a picture of the same name in {images}")
    return ColourResult(len(kept), float(np.mean(kept)), float(np.mean(estimated)))
