"""--engine ray: a local Ray instance (2 CPUs) gives the local engine's files and manifest rows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import s3_filesystem, save, square_image

pytest.importorskip("ray.data", reason="Ray is an optional extra: pip install 'bgcut[ray]'")


def _rows(path: Path) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return sorted(rows, key=lambda r: r["input"])


def test_ray_engine_matches_local_engine(s3_env: dict[str, str], tmp_path: Path, luma_weights: Path) -> None:
    """Ray reads the photos from a bucket (a local S3 server), as on a cluster; the local engine
    reads the same files from disk. The outputs and manifest rows must be the same."""
    src = tmp_path / "in"
    for i in range(7):
        save(square_image((50 + 3 * i, 40), (4, 4, 20 + 2 * i, 30)), src / f"d{i % 2}" / f"img{i}.png")
    (src / "broken.jpg").write_bytes(b"not a jpeg")
    s3 = s3_filesystem(s3_env)
    s3.mkdir("bgcut-ray")
    s3.put(str(src) + "/", "bgcut-ray/in/", recursive=True)
    inputs = {"local": str(src), "ray": "s3://bgcut-ray/in"}
    results = {}
    for engine in ("local", "ray"):
        out = tmp_path / engine
        cmd = [sys.executable, "-m", "bgcut", inputs[engine], "-o", str(out), "-w", str(luma_weights), "-b", "3"]
        cmd += ["--format", "crop", "--manifest", str(tmp_path / f"{engine}.jsonl"), "--engine", engine, "-q"]
        env = {**os.environ, **s3_env} if engine == "ray" else None
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
        assert proc.returncode == 1, proc.stderr  # the broken file fails, on both engines
        broken = f"{inputs[engine]}/broken.jpg" if engine == "ray" else str(src / "broken.jpg")
        assert f"bgcut: error: {broken}: not an image, or a format PIL cannot identify" in proc.stderr
        # Under -q only bgcut's own error lines: none of Ray's INFO reports, deprecation or token notes.
        noise = [line for line in proc.stderr.splitlines() if " INFO " in line or " WARNING " in line
                 or "deprecated" in line or "Token authentication" in line]  # fmt: skip
        assert noise == [], proc.stderr
        results[engine] = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*.png")}
    assert len(results["local"]) == 7
    assert results["ray"] == results["local"]  # byte-identical

    def rows(engine: str) -> list[dict]:
        found = _rows(tmp_path / f"{engine}.jsonl")
        prefix = inputs[engine].rstrip("/") + "/"
        for r in found:
            r["input"] = r["input"].replace(os.sep, "/").removeprefix(prefix.replace(os.sep, "/"))
            r["outputs"] = [Path(o).name for o in r["outputs"]]
        return sorted(found, key=lambda r: r["input"])

    assert rows("ray") == rows("local")

    # resume: a rerun on Ray skips everything the first run wrote
    cmd = [sys.executable, "-m", "bgcut", f"{inputs['ray']}/d0", "-o", str(tmp_path / "ray" / "d0")]
    cmd += ["-w", str(luma_weights), "--format", "crop", "--engine", "ray"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env={**os.environ, **s3_env})
    assert proc.returncode == 0 and "0 done, 4 skipped, 0 failed" in proc.stderr, proc.stderr
