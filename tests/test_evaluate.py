"""Metrics on masks whose scores are known by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bgcut.errors import UsageError
from bgcut.evaluate import MaskMetrics, edge_band, evaluate_colour, s_measure


def gt_square() -> np.ndarray:
    gt = np.zeros((20, 20), np.uint8)
    gt[5:15, 5:15] = 255
    return gt


def test_perfect_prediction() -> None:
    m = MaskMetrics()
    m.update(gt_square(), gt_square())
    r = m.compute()
    assert r.mae == 0 and r.mIoU == 1 and r.maxF == pytest.approx(1.0) and r.s_measure == pytest.approx(1.0, abs=1e-6)


def test_inverted_prediction() -> None:
    m = MaskMetrics()
    m.update(255 - gt_square(), gt_square())
    r = m.compute()
    assert r.mae == 1 and r.mIoU == 0 and r.s_measure < 0.1


def test_half_grey_prediction() -> None:
    m = MaskMetrics()
    pred = np.full((20, 20), 0.5, np.float32)
    m.update(pred, gt_square())
    r = m.compute()
    assert r.mae == pytest.approx(0.5)
    # Every pixel >= 0.5: IoU = 100 / 400; at best threshold precision = 0.25, recall = 1.
    assert r.mIoU == pytest.approx(0.25)
    assert r.maxF == pytest.approx(1.3 * 0.25 / (0.3 * 0.25 + 1))


def test_half_object_found() -> None:
    pred = gt_square()
    pred[:, 10:] = 0  # left half of the object
    m = MaskMetrics()
    m.update(pred, gt_square())
    r = m.compute()
    assert r.mIoU == pytest.approx(0.5) and r.mae == pytest.approx(50 / 400)
    assert r.maxF == pytest.approx(1.3 * 1 * 0.5 / (0.3 + 0.5))


def test_empty_ground_truth_s_measure() -> None:
    assert s_measure(np.zeros((4, 4)), np.zeros((4, 4), bool)) == 1.0
    assert s_measure(np.ones((4, 4)), np.zeros((4, 4), bool)) == 0.0


def test_boundary_mae_counts_only_the_band_around_the_edge() -> None:
    gt = np.zeros((60, 80), np.uint8)
    gt[20:40, 20:60] = 255
    band = edge_band(gt > 127)
    # 5 px each side of the edge: a ring around the 20 x 40 box, nothing far inside or outside.
    assert band[30, 20] and band[30, 15] and band[30, 24] and not band[30, 40] and not band[5, 5]
    shifted = np.zeros_like(gt)
    shifted[20:40, 23:63] = 255  # the object found 3 px to the right
    m = MaskMetrics()
    m.update(shifted, gt)
    r = m.compute()
    wrong = (shifted > 127) != (gt > 127)
    assert r.boundary_mae == pytest.approx(wrong[band].sum() / band.sum())
    assert r.mae == pytest.approx(wrong.mean()) and r.boundary_mae > 3 * r.mae
    perfect = MaskMetrics()
    perfect.update(gt, gt)
    assert perfect.compute().boundary_mae == 0.0


def test_colour_evaluation_on_known_composites(tmp_path: Path) -> None:
    """Estimating the foreground colour must beat keeping the photo's mixed colours."""
    for folder in ("images", "masks", "backs"):
        (tmp_path / folder).mkdir()
    for i, colour in enumerate([(200, 120, 40), (30, 160, 90)]):
        fg = np.zeros((60, 80, 3), np.uint8)
        fg[:] = colour
        mask = np.zeros((60, 80), np.uint8)
        mask[15:45, 20:60] = 255
        Image.fromarray(fg).save(tmp_path / "images" / f"p{i}.png")
        Image.fromarray(mask).save(tmp_path / "masks" / f"p{i}.png")
        Image.fromarray(np.full((50, 50, 3), (0, 0, 255) if i else (255, 255, 255), np.uint8)).save(
            tmp_path / "backs" / f"b{i}.png"
        )
    r = evaluate_colour(tmp_path / "images", tmp_path / "masks", tmp_path / "backs")
    assert r.n == 2 and r.kept > 10 and r.estimated < 0.3 * r.kept
    with pytest.raises(UsageError, match="needs at least two background photos"):
        (tmp_path / "backs" / "b1.png").unlink()
        evaluate_colour(tmp_path / "images", tmp_path / "masks", tmp_path / "backs")
