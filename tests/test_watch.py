"""``--watch``: files written slowly into a watched folder, renamed into place, replaced and
deleted; Ctrl-C (SIGINT) and SIGTERM each end it with the summary."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bgcut.config import RunOptions
from bgcut.watch import watch

from .conftest import default_sigint, square_image


def _png(box: tuple[int, int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(square_image((80, 60), box)).save(buf, "PNG")
    return buf.getvalue()


def _wait_for(check, seconds: float = 20.0) -> None:  # noqa: ANN001
    deadline = time.time() + seconds
    while time.time() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError("timed out")


# Each way of watching is ended by one of the two stops, so both stops are covered at no extra cost.
@pytest.mark.parametrize(("how", "stop"), [("--watch", signal.SIGTERM), ("--watch-poll", signal.SIGINT)])
def test_watch_takes_what_arrives_once_it_is_whole(
    tmp_path: Path, luma_weights: Path, how: str, stop: signal.Signals
) -> None:
    src, out, manifest = tmp_path / "in", tmp_path / "out", tmp_path / "run.jsonl"
    src.mkdir()
    (src / "first.png").write_bytes(_png((10, 10, 30, 30)))
    cmd = [sys.executable, "-m", "bgcut", str(src), "-o", str(out), "-w", str(luma_weights), how,
           "--manifest", str(manifest), "-j", "0"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint)
    try:
        _wait_for(lambda: (out / "first.png").is_file())

        def rows() -> list[dict]:
            return [json.loads(line) for line in manifest.read_text().splitlines()] if manifest.exists() else []

        # A slow write: half the bytes, a pause shorter than the settling time, the rest.
        data = _png((40, 20, 70, 50))
        with open(src / "slow.png", "wb") as f:
            f.write(data[: len(data) // 2])
            f.flush()
            time.sleep(0.5)
            f.write(data[len(data) // 2 :])
        # A copy renamed into place (its temporary name is hidden, so never read).
        (src / ".copy.part").write_bytes(_png((5, 30, 25, 55)))
        (src / ".copy.part").rename(src / "renamed.png")
        (src / "sub").mkdir()
        (src / "sub" / "deep.png").write_bytes(_png((20, 20, 60, 40)))
        _wait_for(lambda: {Path(r["input"]).name for r in rows()} >= {"slow.png", "renamed.png", "deep.png"})
        assert (out / "sub" / "deep.png").is_file()  # the folder's tree is kept
        before = np.asarray(Image.open(out / "first.png"))[..., 3]
        (src / "first.png").write_bytes(_png((45, 5, 75, 25)))  # replaced: cut out again
        _wait_for(lambda: sum(Path(r["input"]).name == "first.png" for r in rows()) == 2)
        after = np.asarray(Image.open(out / "first.png"))[..., 3]
        assert not np.array_equal(before, after) and after[15, 60] == 255 and after[20, 20] == 0
        (src / "renamed.png").unlink()  # deleted: its output stays, nothing fails
        time.sleep(1.5)
    finally:
        proc.send_signal(stop)
        stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    assert stderr.strip().splitlines()[-1].startswith("bgcut: 5 done, 0 skipped, 0 failed")
    assert stderr.strip().endswith("(stopped watching)") and "Traceback" not in stderr
    assert f"bgcut: watching {src} for new or replaced images; Ctrl-C or SIGTERM stops" in stderr.splitlines()
    assert all(r["status"] == "done" for r in rows())  # the half-written file was never read as one
    assert (out / "renamed.png").is_file() and not list(out.rglob(".*.part"))


def test_watch_needs_local_folders(tmp_path: Path, luma_weights: Path) -> None:
    photo = tmp_path / "p.png"
    photo.write_bytes(_png((10, 10, 30, 30)))
    cmd = [sys.executable, "-m", "bgcut", str(photo), "-o", str(tmp_path / "o"), "-w", str(luma_weights), "--watch"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == f"bgcut: error: --watch watches local folders; {photo} is not one"


def test_a_watch_that_starts_on_an_empty_folder_says_it_watches_and_no_error(
    tmp_path: Path, luma_weights: Path
) -> None:
    """A plain run over an empty folder is an error (exit 1); a watch often starts on one."""
    src = tmp_path / "in"
    src.mkdir()
    (src / "README.md").write_text("photos go here")
    lines: list[str] = []
    stop = threading.Event()
    run = RunOptions(weights=str(luma_weights), workers=0)
    watcher = threading.Thread(
        target=lambda: lines.append(
            watch([str(src)], str(tmp_path / "out"), run, stop=stop, poll=True, log=lines.append)
        )
    )
    watcher.start()
    try:
        _wait_for(lambda: any(str(line).startswith("bgcut: watching") for line in lines))
    finally:
        stop.set()
        watcher.join(timeout=30)
    said = [line for line in lines if isinstance(line, str)]
    # The README is passed over without a warning, as in a plain run; no "no input images" error.
    assert said == [f"bgcut: watching {src} for new or replaced images; Ctrl-C or SIGTERM stops"]
    (summary,) = [line for line in lines if not isinstance(line, str)]
    assert summary.ok and summary.done == 0
