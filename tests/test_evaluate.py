"""Metrics on masks whose scores are known by hand."""

from __future__ import annotations

import numpy as np
import pytest

from bgcut.evaluate import MaskMetrics, s_measure


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
