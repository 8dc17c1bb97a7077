"""bench/carry.py: weights cut into parts for the accelerator machine's per-call limit, then
joined and checked there. Run on the embedded model, cut into parts of a quarter megabyte."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest

from bgcut import Remover
from bgcut.errors import ChecksumError

from .conftest import square_image

spec = importlib.util.spec_from_file_location("carry", Path(__file__).resolve().parent.parent / "bench" / "carry.py")
carry = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
spec.loader.exec_module(carry)  # type: ignore[union-attr]


def test_parts_travel_apart_and_join_into_the_same_model(tmp_path: Path) -> None:
    parts = carry.split("bgcut-lite", tmp_path / "split", max_mb=0.25, fp16=False)
    assert len(parts) >= 3 and all(p.stat().st_size <= 0.25 * 2**20 for p in parts)
    # Each part arrives in a call of its own, in a folder of its own.
    arrived = []
    for i, p in enumerate(parts):
        folder = tmp_path / f"call{i}"
        folder.mkdir()
        shutil.copy(p, folder / p.name)
        arrived.append(folder)
    out = carry.join(tmp_path / "split", tmp_path / "joined", arrived)
    photo = [square_image((80, 60), (10, 10, 50, 40))]
    joined = Remover(weights=str(out), device="cpu").masks(photo)[0]
    assert np.array_equal(joined, Remover(model="bgcut-lite", device="cpu").masks(photo)[0])
    # A damaged or missing part is refused, and nothing is left to be loaded by mistake.
    parts[1].write_bytes(parts[1].read_bytes()[:-1] + b"x")
    with pytest.raises(ChecksumError, match="part-001.bin: sha256 differs"):
        carry.join(tmp_path / "split", tmp_path / "bad")
    assert list((tmp_path / "bad").iterdir()) == []
    parts[1].unlink()
    with pytest.raises(FileNotFoundError, match="part-001.bin has not arrived"):
        carry.join(tmp_path / "split", tmp_path / "bad2")


def test_fp16_parts_halve_the_bytes_and_keep_the_masks(tmp_path: Path) -> None:
    full = carry.split("bgcut-lite", tmp_path / "fp32", max_mb=60, fp16=False)[0].stat().st_size
    half = carry.split("bgcut-lite", tmp_path / "fp16", max_mb=60, fp16=True)[0].stat().st_size
    assert half < 0.55 * full
    out = carry.join(tmp_path / "fp16", tmp_path / "joined")
    photo = [square_image((80, 60), (10, 10, 50, 40))]
    a = Remover(weights=str(out), device="cpu").masks(photo)[0].astype(int)
    b = Remover(model="bgcut-lite", device="cpu").masks(photo)[0].astype(int)
    assert np.abs(a - b).max() <= 2
