"""SIGINT mid-run: exit 130, no half-written file, and a rerun resumes where it stopped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from .conftest import default_sigint


def test_sigint_mid_run_then_resume(tmp_path: Path, luma_weights: Path) -> None:
    rng = np.random.default_rng(0)
    n = 40
    for i in range(n):
        # Noise compresses badly, so each PNG takes a while to encode: the run is still going when we interrupt it.
        Image.fromarray(rng.integers(0, 256, (900, 1200, 3), dtype=np.uint8)).save(tmp_path / f"in{i:02d}.bmp")
    src = tmp_path
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "bgcut", str(src), "-o", str(out), "-w", str(luma_weights), "-j", "2", "-b", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint)
    deadline = time.time() + 60
    while time.time() < deadline and not (out.exists() and any(out.glob("*.png"))):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "(interrupted)" in err
    written = sorted(out.glob("*.png"))
    assert 0 < len(written) < n
    assert not [p for p in out.iterdir() if p.name.endswith(".bgcut-tmp")], "temporary files left behind"
    for p in written:  # every file that exists is complete
        with Image.open(p) as im:
            im.load()
            assert im.size == (1200, 900)
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{n - len(written)} done, {len(written)} skipped, 0 failed" in rerun.stderr
    assert len(list(out.glob("*.png"))) == n
    assert os.path.getsize(written[0]) > 0
