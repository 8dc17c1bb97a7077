"""``bgcut camera``: a video file read as a camera, written to a file, and shown in a window under Xvfb.

The window test needs Xvfb (Debian's ``xvfb``): skipped on a developer machine without it; under
CI (``CI`` set, as ``.ci/run`` does, which also installs it) an X server that cannot start fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from bgcut.cli import app
from bgcut.config import PostOptions, RunOptions
from bgcut.pipeline.infer import Predictor

from .test_video import N, expected_mask, make_clip, read_frames

pytest.importorskip("av")
SCREENSHOT = os.environ.get("BGCUT_SCREENSHOT_CAMERA")  # where to keep the window's screenshot, to look at


def test_a_file_read_as_a_camera_is_written(tmp_path: Path, luma_weights: Path) -> None:
    clip = make_clip(tmp_path / "clip.mp4")
    out = tmp_path / "take.webm"
    cmd = ["camera", str(clip), "--no-window", "-o", str(out), "--weights", str(luma_weights)]
    result = CliRunner().invoke(app, cmd)
    assert result.exit_code == 0, result.output
    assert f"{N} frames" in result.output and str(out) in result.output
    frames, container = read_frames(out)
    container.close()
    assert len(frames) == N
    assert [round(f.time * 24) for f in frames] == list(range(N))  # the file's own times
    alpha = frames[4].to_ndarray(format="rgba")[:, :, 3].astype(int)
    assert np.abs(alpha - expected_mask(4)).mean() < 6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "take.webm"]


def test_camera_usage_errors(tmp_path: Path, luma_weights: Path) -> None:
    runner = CliRunner()
    missing = runner.invoke(app, ["camera", str(tmp_path / "nope.mp4"), "--no-window", "-o", str(tmp_path / "a.mp4")])
    assert missing.exit_code == 2
    assert "nope.mp4: no such camera or video file" in missing.output
    clip = make_clip(tmp_path / "clip.mp4")
    headless = runner.invoke(app, ["camera", str(clip), "--no-window", "--weights", str(luma_weights)])
    assert headless.exit_code == 2 and "--no-window needs -o FILE" in headless.output
    wrong = runner.invoke(app, ["camera", str(clip), "-o", str(tmp_path / "x.gif"), "--weights", str(luma_weights)])
    assert wrong.exit_code == 2 and "expected a .webm, .mov, .mp4 file" in wrong.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]


def test_a_missing_camera_is_one_line(tmp_path: Path, luma_weights: Path) -> None:
    """OpenCV's own "[ WARN:0@0.7] ... can't open camera by index" lines came before bgcut's."""
    import sys

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bgcut",
            "camera",
            "97",
            "--no-window",
            "-o",
            str(tmp_path / "a.webm"),
            "-w",
            str(luma_weights),
        ],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "bgcut: error: camera 97: cannot be opened (no such device, or no permission to read it)"
    ]


@pytest.fixture
def display() -> Iterator[str]:
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        message = "Xvfb is needed for the window test: apt-get install xvfb"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    name = f":{90 + os.getpid() % 100}"
    server = subprocess.Popen([xvfb, name, "-screen", "0", "640x480x24", "-nolisten", "tcp"], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not Path(f"/tmp/.X11-unix/X{name[1:]}").exists():
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"Xvfb {name} did not start")
            time.sleep(0.05)
        yield name
    finally:
        server.terminate()
        server.wait(timeout=10)


def _find(screen: np.ndarray, shown: np.ndarray) -> tuple[int, int] | None:
    h, w = shown.shape[:2]
    for y in range(0, 12):
        for x in range(0, 12):
            if np.array_equal(screen[y : y + h, x : x + w], shown):
                return x, y
    return None


def test_window_shows_the_cutout_on_a_checkerboard(
    display: str, tmp_path: Path, luma_weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PIL import Image, ImageGrab

    from bgcut.video.camera import run_camera

    monkeypatch.setenv("DISPLAY", display)
    clip = make_clip(tmp_path / "clip.mp4", w=160, h=120, top=60)  # the square below the rate label
    predictor = Predictor.from_options(RunOptions(weights=str(luma_weights)), pad=False)
    seen: dict[str, np.ndarray] = {}

    def grab(n: int, shown: np.ndarray) -> None:
        if n == 3:
            seen["shown"] = shown
            seen["screen"] = np.asarray(ImageGrab.grab(xdisplay=display).convert("RGB"))

    summary = run_camera(str(clip), predictor, PostOptions(), None, max_frames=5, on_frame=grab)
    assert summary.frames == 5 and summary.output is None
    if SCREENSHOT:
        Image.fromarray(seen["screen"]).save(SCREENSHOT)
    shown, screen = seen["shown"], seen["screen"]
    assert _find(screen, shown) is not None, "the window does not show the frame"
    # Frame 2 (the third): the white square (x 12-32, y 60-84) stays white; the black around it
    # became the checkerboard (light and dark cells, nothing else).
    assert (shown[64:80, 16:28] > 240).all()
    board = np.concatenate([shown[40:56].reshape(-1, 3), shown[90:].reshape(-1, 3)])
    assert {tuple(int(v) for v in c) for c in np.unique(board, axis=0)} == {(204, 204, 204), (153, 153, 153)}
