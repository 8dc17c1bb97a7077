"""--engine ray: a local Ray instance (2 CPUs) gives the local engine's files and manifest rows."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import save, square_image

pytest.importorskip("ray.data", reason="Ray is an optional extra: pip install 'bgcut[ray]'")


def _rows(path: Path) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return sorted(rows, key=lambda r: r["input"])


def test_ray_engine_matches_local_engine(tmp_path: Path, luma_weights: Path) -> None:
    src = tmp_path / "in"
    for i in range(7):
        save(square_image((50 + 3 * i, 40), (4, 4, 20 + 2 * i, 30)), src / f"d{i % 2}" / f"img{i}.png")
    (src / "broken.jpg").write_bytes(b"not a jpeg")
    results = {}
    for engine in ("local", "ray"):
        out = tmp_path / engine
        cmd = [sys.executable, "-m", "bgcut", str(src), "-o", str(out), "-w", str(luma_weights), "-b", "3"]
        cmd += ["--format", "crop", "--manifest", str(tmp_path / f"{engine}.jsonl"), "--engine", engine, "-q"]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
        assert proc.returncode == 1, proc.stderr  # the broken file fails, on both engines
        assert f"bgcut: error: {src / 'broken.jpg'}: not an image, or a format PIL cannot identify" in proc.stderr
        results[engine] = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*.png")}
    assert len(results["local"]) == 7
    assert results["ray"] == results["local"]  # byte-identical
    local_rows = [{**r, "outputs": [Path(o).name for o in r["outputs"]]} for r in _rows(tmp_path / "local.jsonl")]
    ray_rows = [{**r, "outputs": [Path(o).name for o in r["outputs"]]} for r in _rows(tmp_path / "ray.jsonl")]
    assert ray_rows == local_rows

    # resume: a rerun on Ray skips everything the first run wrote
    cmd = [sys.executable, "-m", "bgcut", str(src / "d0"), "-o", str(tmp_path / "ray" / "d0"), "-w", str(luma_weights)]
    proc = subprocess.run([*cmd, "--format", "crop", "--engine", "ray"], capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0 and "0 done, 4 skipped, 0 failed" in proc.stderr, proc.stderr
