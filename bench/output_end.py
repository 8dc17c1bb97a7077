"""How long a caller waits for a run's output to end after the run's process has exited.

    python bench/output_end.py [--runs 9] [--other-tree PATH] -- bgcut ARGS...

A caller that reads the output to its end (a shell pipe, ``subprocess.run(...,
capture_output=True)``) waits for every process that holds the run's stdout and stderr, not
only for the one it started: a fork server that is still tearing itself down keeps them open.
Each run is started with both streams piped, timed to its exit (``wait``) and to the end of
both streams. With ``--other-tree``, the same command also runs with that source tree first on
``PYTHONPATH`` (a git worktree of another commit), A and B in turn. Run it from outside the
checkout (``python -m bgcut`` would import the current folder's ``bgcut`` first).
Prints the median exit time, the median time to the output's end, and the median lag between them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import time


def one_run(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(seconds to the exit, seconds to the end of stdout and stderr)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    proc.wait()
    exited = time.perf_counter()
    proc.communicate()
    ended = time.perf_counter()
    if proc.returncode != 0:
        raise SystemExit(f"the command exited with {proc.returncode}")
    return exited - start, ended - start


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--other-tree", default=None, help="a source tree for B, put first on PYTHONPATH")
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    envs = {"A": dict(os.environ)}
    if args.other_tree:
        envs["B"] = {**os.environ, "PYTHONPATH": args.other_tree}
    seen: dict[str, list[tuple[float, float]]] = {k: [] for k in envs}
    for i in range(args.runs + 1):  # the first round warms the caches and is not counted
        for key, env in envs.items():
            timing = one_run(cmd, env)
            if i:
                seen[key].append(timing)
    for key, runs in seen.items():
        exit_s = statistics.median(e for e, _ in runs)
        end_s = statistics.median(n for _, n in runs)
        lag_ms = statistics.median((n - e) * 1000 for e, n in runs)
        print(f"{key}: exit {exit_s:.3f} s, output's end {end_s:.3f} s, lag {lag_ms:.0f} ms (median of {len(runs)})")
    if "B" in seen:
        ratios = [a[1] / b[1] for a, b in zip(seen["A"], seen["B"], strict=True)]
        print(f"A/B to the output's end: {statistics.median(ratios):.3f} ({min(ratios):.3f} to {max(ratios):.3f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
