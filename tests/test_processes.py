"""Processes: a killed decode worker, a killed or terminated main process, the current folder's modules."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from .conftest import default_sigint

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process tree from /proc")


def _ppid(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited; only its parent has not reaped it


def descendants(root: int) -> set[int]:
    pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    found, frontier = set(), {root}
    while frontier:
        frontier = {p for p in pids if _ppid(p) in frontier} - found
        found |= frontier
    return found


def decode_workers(main: int) -> set[int]:
    """The DataLoader workers: children of the fork server, which is a child of the main process."""
    return {p for p in descendants(main) if _ppid(p) != main}


def slow_inputs(folder: Path, n: int, size: tuple[int, int] = (700, 900)) -> None:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for i in range(n):
        # Noise compresses badly: each image takes a while to encode, so the run lasts long enough to act on.
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(folder / f"in{i:02d}.bmp")


def start(src: Path, out: Path, weights: Path, *extra: str, cwd: Path | None = None) -> subprocess.Popen[str]:
    # The console script's way in: the current folder is not on the main process's sys.path.
    code = "import sys; sys.path.pop(0); from bgcut.cli import main; main()"
    cmd = [sys.executable, "-c", code, str(src), "-o", str(out), "-w", str(weights), "-j", "2", "-b", "2", *extra]
    return subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd, preexec_fn=default_sigint
    )


def wait_for(condition: object, seconds: float = 60) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError("timed out")


def test_a_killed_worker_is_replaced_and_the_run_completes(tmp_path: Path, luma_weights: Path) -> None:
    n = 24
    slow_inputs(tmp_path / "in", n)
    out = tmp_path / "out"
    proc = start(tmp_path / "in", out, luma_weights)
    wait_for(lambda: out.exists() and any(out.glob("*.png")) and decode_workers(proc.pid))
    os.kill(min(decode_workers(proc.pid)), signal.SIGKILL)
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert "bgcut: warning: a decode worker died" in err and "retrying its" in err
    assert f"{n} done, 0 skipped, 0 failed" in err
    assert len(list(out.glob("*.png"))) == n


def test_helpers_exit_when_the_main_process_is_killed(tmp_path: Path, luma_weights: Path) -> None:
    slow_inputs(tmp_path / "in", 24)
    out = tmp_path / "out"
    proc = start(tmp_path / "in", out, luma_weights)
    wait_for(lambda: out.exists() and any(out.glob("*.png")) and decode_workers(proc.pid))
    helpers = descendants(proc.pid)  # fork server, resource tracker, workers
    assert len(helpers) >= 3
    proc.kill()
    t0 = time.time()
    _, err = proc.communicate(timeout=20)  # returns only once no helper holds stdout and stderr open
    wait_for(lambda: not any(_alive(p) for p in helpers), seconds=10)
    assert time.time() - t0 < 10
    # The resource tracker unlinks the pool's semaphores, and says nothing of it: before, it
    # printed a two-line UserWarning ("There appear to be 5 leaked semaphore objects").
    assert "Warning" not in err and "resource_tracker" not in err, err


def test_sigterm_ends_the_run_like_ctrl_c(tmp_path: Path, luma_weights: Path) -> None:
    n = 24
    slow_inputs(tmp_path / "in", n)
    out = tmp_path / "out"
    proc = start(tmp_path / "in", out, luma_weights)
    wait_for(lambda: out.exists() and any(out.glob("*.png")))
    helpers = descendants(proc.pid)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "Traceback" not in err and "(interrupted)" in err, err
    written = sorted(out.glob("*.png"))
    assert 0 < len(written) < n, err
    assert not [p for p in out.iterdir() if p.name.endswith(".bgcut-tmp")], "temporary files left behind"
    wait_for(lambda: not any(_alive(p) for p in helpers), seconds=10)


def test_workers_never_import_from_the_current_folder(tmp_path: Path, luma_weights: Path) -> None:
    slow_inputs(tmp_path / "in", 8, size=(60, 80))
    here = tmp_path / "project"
    here.mkdir()
    # torch imports concurrent.futures: a module of that name here would shadow the standard library.
    (here / "concurrent.py").write_text("open(__file__ + '.imported', 'w').close()\nraise ImportError('shadowed')\n")
    proc = start(tmp_path / "in", tmp_path / "out", luma_weights, cwd=here)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert not (here / "concurrent.py.imported").exists()
    assert len(list((tmp_path / "out").glob("*.png"))) == 8


_COLLECTOR_SPY = """
import gc, importlib, json, sys
sys.path.pop(0)
module_name, function_name = sys.argv.pop(1), sys.argv.pop(1)
module = importlib.import_module(module_name)
seen = {}
called = getattr(module, function_name)
def spy(*args, **kwargs):
    seen["enabled"] = gc.isenabled()
    seen["frozen"] = gc.get_freeze_count()
    return called(*args, **kwargs)
setattr(module, function_name, spy)
from bgcut.cli import main
try:
    main()
except SystemExit as e:
    seen["code"] = e.code
seen["unfrozen_after"] = len(gc.get_objects(generation=2))
print(json.dumps(seen))
"""


def run_spying_on_the_collector(module: str, function: str, *args: str) -> tuple[dict, str]:
    """``bgcut ARGS`` in a subprocess, as the console script runs it, with ``module.function``
    (called by the command once its imports are done) noting the collector's state; returns
    what it saw, the exit code and the frozen objects left over after ``main()``, and stdout."""
    cmd = [sys.executable, "-c", _COLLECTOR_SPY, module, function, *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1]), done.stdout


def test_the_collector_runs_during_the_run_and_skips_the_exit(tmp_path: Path, luma_weights: Path) -> None:
    """The command imports torch with the collector off, then freezes those objects and turns the
    collector back on before any photo is cut out; at the end it freezes everything, so the
    interpreter's last pass over torch's objects is skipped (bench/RESULTS.md, "The collector")."""
    Image.new("RGB", (40, 30), (250, 250, 250)).save(tmp_path / "a.png")
    args = [str(tmp_path / "a.png"), "-o", str(tmp_path / "cut.png"), "-w", str(luma_weights), "-q"]
    seen, _ = run_spying_on_the_collector("bgcut.run", "remove_backgrounds", *args)
    assert seen["code"] == 0
    assert seen["enabled"] is True
    assert seen["frozen"] > 10_000  # torch's modules, classes and functions
    assert seen["unfrozen_after"] == 0
    assert Image.open(tmp_path / "cut.png").getpixel((5, 5))[3] == 255


def test_another_command_runs_with_the_collector_on_and_torch_frozen() -> None:
    """``bgcut models list`` imports the model zoo (and torch) the way ``remove`` does."""
    seen, out = run_spying_on_the_collector("bgcut.models", "list_models", "models", "list")
    assert "bgcut-lite" in out
    assert seen["code"] == 0 and seen["enabled"] is True and seen["frozen"] > 10_000
    assert seen["unfrozen_after"] == 0


def test_the_fork_server_leaves_without_the_interpreters_teardown(tmp_path: Path) -> None:
    """When the process that started it ends, the fork server exits at once: its interpreter no
    longer tears itself down (frees torch's modules, collects) while the run's stdout and stderr
    are still open. A module preloaded into it makes a cycle of garbage as it exits, which only
    the teardown's last collection would free, and its finaliser would say so."""
    (tmp_path / "canary.py").write_text(
        "import atexit, os\n"
        "class Cycle:\n"
        "    def __init__(self):\n"
        "        self.me = self\n"
        "    def __del__(self, write=os.write):  # bound now: the teardown clears the module's names\n"
        "        write(2, b'fork server torn down\\n')\n"
        "atexit.register(Cycle)\n"
    )
    script = (
        "from bgcut.workers import worker_context\n"
        "with worker_context(preload=('canary',)).Pool(1) as pool:\n"
        "    assert pool.apply(int, ('7',)) == 7\n"
        "print('done')\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    # run waits for the end of stderr, so for the fork server too, not only for its parent.
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "done\n"
    assert "torn down" not in result.stderr, result.stderr


def test_the_quick_exit_is_armed_only_in_a_fork_server() -> None:
    """This test process imports the preload module too; nothing in it may end pytest early."""
    import atexit

    import bgcut._worker_preload as preload

    assert not preload._in_fork_server()
    before = atexit._ncallbacks()
    atexit.unregister(preload._leave_now)  # a no-op: it was never registered here
    assert atexit._ncallbacks() == before
