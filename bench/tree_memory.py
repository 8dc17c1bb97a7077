"""Peak memory of a whole command: its process tree's private memory plus the shared memory it made.

    python bench/tree_memory.py photos DIR [--count 10] [--width 10000] [--height 9990]
    python bench/tree_memory.py run -- bgcut DIR -o OUT -m bgcut-lite -q --overwrite

``photos`` writes ``--count`` large JPEGs (a test photo scaled up, with a little noise, so that
PNG cut-outs of them do not compress to nothing). ``run`` starts the command and, every 50 ms
until it ends, adds up ``RssAnon`` (``/proc/PID/status``) over the command and every process
below it (decode workers, fork server, resource tracker), and reads how far the system's
``Shmem`` (``/proc/meminfo``) has grown since the start: the decode workers' in-memory files
count there, not in any process's private memory. ``/usr/bin/time`` sees neither the workers
nor those files; ``MemAvailable`` also counts the outputs' dirty page cache. Prints one JSON line:
the peak of the sum, its two parts at that moment, and the main process's own peak. Linux only.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PHOTO = HERE.parent / "tests" / "photos" / "chelsea.jpg"


def _meminfo_mib(key: str) -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) // 1024
    raise KeyError(key)


def _anon_mib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) // 1024
    except OSError:
        pass  # gone between the listing and the read
    return 0


def _tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            ppid = int(Path(f"/proc/{name}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except OSError:
            continue
        children.setdefault(ppid, []).append(int(name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def run(command: list[str]) -> dict[str, int]:
    shmem_before = _meminfo_mib("Shmem")
    peak = {"total_mib": 0, "anon_mib": 0, "shmem_mib": 0}
    main_peak = 0
    proc = subprocess.Popen(command)
    while proc.poll() is None:
        anon = sum(_anon_mib(pid) for pid in _tree(proc.pid))
        shmem = max(0, _meminfo_mib("Shmem") - shmem_before)
        main_peak = max(main_peak, _anon_mib(proc.pid))
        if anon + shmem > peak["total_mib"]:
            peak = {"total_mib": anon + shmem, "anon_mib": anon, "shmem_mib": shmem}
        time.sleep(0.05)
    return {"rc": proc.returncode, **peak, "main_anon_mib": main_peak}


def photos(folder: Path, count: int, width: int, height: int) -> None:
    import cv2
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    base = cv2.resize(cv2.imread(str(PHOTO)), (width, height))
    noisy = cv2.add(base, np.random.default_rng(0).integers(0, 12, base.shape, dtype=np.uint8))
    for i in range(count):
        cv2.imwrite(str(folder / f"large{i:02d}.jpg"), noisy, [cv2.IMWRITE_JPEG_QUALITY, 80])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="verb", required=True)
    p = sub.add_parser("photos")
    p.add_argument("folder", type=Path)
    p.add_argument("--count", type=int, default=10)
    p.add_argument("--width", type=int, default=10000)
    p.add_argument("--height", type=int, default=9990)
    r = sub.add_parser("run")
    r.add_argument("command", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    if args.verb == "photos":
        photos(args.folder, args.count, args.width, args.height)
        return
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        ap.error("run: give the command after --")
    print(json.dumps(run(command)))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
