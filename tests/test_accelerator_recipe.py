"""weights/recipes/accelerator_train.py, issue 13's accelerator run, in its tiny setting on CPU:
pack pairs into shards that each fit one call, unpack them as they arrive, train a segment, bring
the weights back, and resume in the next segment. The pairs are drawn here."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

from PIL import Image

from bgcut import Remover

from .conftest import square_image

RECIPE = Path(__file__).resolve().parent.parent / "weights" / "recipes" / "accelerator_train.py"
spec = importlib.util.spec_from_file_location("accelerator_train", RECIPE)
recipe = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
spec.loader.exec_module(recipe)  # type: ignore[union-attr]


def test_pack_then_two_segments_resume_and_bring_weights_back(tmp_path: Path) -> None:
    duts, backgrounds = tmp_path / "duts", tmp_path / "bg"
    (duts / "images").mkdir(parents=True)
    (duts / "masks").mkdir()
    for i in range(24):
        img = square_image((120, 90), (10 + i, 12, 60 + i, 50))
        Image.fromarray(img).save(duts / "images" / f"p{i:02d}.jpg")
        Image.fromarray(img[:, :, 0]).save(duts / "masks" / f"p{i:02d}.png")
    backgrounds.mkdir()
    for i in range(3):
        Image.fromarray(square_image((200, 150), (0, 0, 10 * i + 5, 20))).save(backgrounds / f"b{i}.jpg")
    shards = tmp_path / "shards"
    summary = recipe.pack(duts, backgrounds, shards, side=96, max_mb=0.02, limit=None)
    assert summary["pairs"] == 24 and summary["backgrounds"] == 3 and summary["shards"] >= 3
    sizes = [t.stat().st_size for t in shards.glob("data-*/*.tar")]
    assert len(sizes) == summary["shards"] and max(sizes) <= 0.02 * 2**20
    # Shards arrive one call at a time: what has arrived is unpacked once, the rest later.
    folders = sorted(shards.glob("data-*"))
    assert recipe.unpack(folders[:1], tmp_path / "data") == 1
    assert recipe.unpack(folders, tmp_path / "data") == len(folders)
    cmd = [sys.executable, str(RECIPE), "segment", "--shards", *map(str, folders), "--work", str(tmp_path / "work")]
    first = subprocess.run(
        [*cmd, "--out", str(tmp_path / "out1"), "--tiny", "--minutes", "1"], capture_output=True, text=True, timeout=240
    )
    assert first.returncode == 0, first.stderr
    assert {p.name for p in (tmp_path / "out1").iterdir()} >= {"model.safetensors", "config.json", "last.pt"}
    second = subprocess.run(
        [*cmd, "--out", str(tmp_path / "out2"), "--tiny", "--minutes", "1"], capture_output=True, text=True, timeout=240
    )
    assert second.returncode == 0, second.stderr
    assert "resumed from" in second.stdout
    # What came back loads as a model.
    masks = Remover(weights=str(tmp_path / "out2"), device="cpu").masks([square_image((120, 90), (20, 20, 70, 60))])
    assert masks[0].shape == (90, 120)
