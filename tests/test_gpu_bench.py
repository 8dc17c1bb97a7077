"""bench/gpu.py, the accelerator's measurement run, in its tiny setting on CPU: the code that will
spend device minutes is run here first, section by section, and its report is read back."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench" / "gpu.py"


def test_the_accelerator_benchmark_runs_tiny_on_cpu(tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    cmd = [sys.executable, str(BENCH), "--tiny", "--device", "cpu", "--out", str(out)]
    cmd += ["--images", str(tmp_path / "none")]  # no photos: it draws its own
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    assert set(report) == {"env", "model", "parity", "fit12mp", "oomcap"}
    assert report["env"][0]["host_cores"] >= 1
    assert [(r["precision"], r["batch"]) for r in report["model"]] == [("fp32", 2), ("bf16", 2)]
    assert all(isinstance(r["images_per_s"], float) and r["images_per_s"] > 0 for r in report["model"])
    assert report["parity"][0]["precision"] == "bf16" and report["parity"][0]["worst_iou"] > 0.9
    assert report["fit12mp"][0]["largest_batch"] == 2
    cap = report["oomcap"][0]
    assert (cap["done"], cap["failed"], cap["written"]) == (2, 0, 2)
