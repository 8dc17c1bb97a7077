"""bgcut.workers.map_surviving_deaths: a worker that dies costs no item and never hangs the caller."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from bgcut.workers import WorkersKeepDyingError, map_surviving_deaths, worker_context

_marks: Path | None = None  # set in each worker by _init: where "killed once" is remembered


def _init(marks: str) -> None:
    global _marks
    _marks = Path(marks)


def _square(i: int) -> tuple[int, int]:
    """i -> (i, i * i). Item 3, and any negative item, kills its worker every time; a file named
    ``once`` in the marks folder makes every item kill its worker the first time it is made."""
    assert _marks is not None
    first = not (_marks / f"{i}.seen").exists()
    (_marks / f"{i}.seen").touch()
    if i == 3 or i < 0 or ((_marks / "once").exists() and first):
        os.kill(os.getpid(), signal.SIGKILL)
    return i, i * i


def _died(i: int) -> tuple[int, int]:
    return i, -1


def test_an_item_that_kills_its_worker_every_time_is_given_up_and_costs_no_other(tmp_path: Path) -> None:
    said: list[str] = []
    got = list(
        map_surviving_deaths(worker_context(), _square, range(12), 2, _init, (str(tmp_path),), _died, said.append)
    )
    assert sorted(got) == sorted([(i, i * i) for i in range(12) if i != 3] + [(3, -1)])
    assert said and all(line.startswith("a worker process died; its ") for line in said)


def test_an_item_whose_worker_died_once_is_made_again(tmp_path: Path) -> None:
    (tmp_path / "once").touch()
    (tmp_path / "0.seen").touch()  # every item but 7 has been seen: only 7 kills, once
    for i in range(1, 12):
        if i != 7:
            (tmp_path / f"{i}.seen").touch()
    said: list[str] = []
    items = [i for i in range(12) if i != 3]
    got = list(map_surviving_deaths(worker_context(), _square, items, 2, _init, (str(tmp_path),), _died, said.append))
    assert sorted(got) == [(i, i * i) for i in items]
    assert len(said) == 1


def test_two_items_that_kill_side_by_side_cost_only_themselves(tmp_path: Path) -> None:
    """-1 and -2 are handed out together and both lost with the pool: each dies again alone, two
    deaths of items. The pool's own death, counted as a third, gave up the run; it did so in 9 of
    40 runs of ``test_a_death_seen_while_handing_out_items_is_survived_too``, where the executor
    saw a death only after more items had gone out."""
    items = [0, -1, -2, *range(4, 12)]
    said: list[str] = []
    got = list(map_surviving_deaths(worker_context(), _square, items, 2, _init, (str(tmp_path),), _died, said.append))
    assert sorted(got) == sorted((i, -1) if i < 0 else (i, i * i) for i in items)
    assert said and all(line.startswith("a worker process died; its ") for line in said)


def test_workers_that_keep_dying_stop_the_run_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(WorkersKeepDyingError, match=r"^worker processes died 3 times in a row: .* a rerun resumes$"):
        list(map_surviving_deaths(worker_context(), _square, [-1] * 6, 2, _init, (str(tmp_path),), _died, print))


def test_a_death_seen_while_handing_out_items_is_survived_too(tmp_path: Path) -> None:
    """A worker that died after the last wait made the next ``submit`` raise BrokenProcessPool out
    of the loop: a traceback for about one run in two with three deaths in 40 items."""
    items = [-i if i in (5, 20, 33) else i for i in range(40) if i != 3]
    for run in range(5):
        marks = tmp_path / str(run)
        marks.mkdir()
        got = list(map_surviving_deaths(worker_context(), _square, items, 2, _init, (str(marks),), _died, print))
        assert sorted(got) == sorted((i, -1) if i < 0 else (i, i * i) for i in items)


BIG_RESULTS = """
import os, signal, time

def init(main):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # as bgcut's workers do: the parent decides

def big(i):
    if i == 3 and os.getpid() != MAIN:
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(0.4)  # the other worker is still busy when the death is seen
    return i, b"x" * 1_000_000  # far larger than a pipe's buffer

def died(i):
    return i, b""

MAIN = int(os.environ["MAIN_PID"])
"""


def test_a_death_beside_a_worker_sending_a_large_result_ends(tmp_path: Path) -> None:
    """The executor ends a broken pool's other workers with SIGTERM, which bgcut's workers ignore;
    one blocked sending a large result into the pipe nobody read kept the run waiting for ever
    (``bgcut train``'s cache, 256 px pairs, after a ``kill -9`` of one decoder)."""
    import subprocess
    import sys

    (tmp_path / "big_results.py").write_text(BIG_RESULTS)
    code = (
        "import os, sys\n"
        f"sys.path.insert(0, {str(tmp_path)!r})\n"
        "os.environ['MAIN_PID'] = str(os.getpid())\n"
        "import big_results as b\n"
        "from bgcut.workers import map_surviving_deaths, worker_context\n"
        "got = list(map_surviving_deaths(worker_context(), b.big, range(8), 2, b.init, (0,), b.died, print))\n"
        "print(sorted((i, len(r)) for i, r in got))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    expected = [(i, 0 if i == 3 else 1_000_000) for i in range(8)]
    assert done.stdout.splitlines()[-1] == str(expected), done.stdout
