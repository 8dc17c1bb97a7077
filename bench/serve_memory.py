"""The server's memory budget under large uploads (issue 26): resident memory before, peak, after.

    python bench/serve_memory.py [--clients 12] [--side 7000] [--budgets 2048,6144] [--model bgcut-lite]

For each budget (``--max-memory-mb``) and each kind of request (plain png-alpha; ``refine=guided``
with ``decontaminate=1``), starts ``bgcut serve`` as a child process on a free local port, posts
``--clients`` copies of one ``--side`` x ``--side`` flat PNG at once (a 7000 x 7000 one is 155 KB,
well under the upload limit), and reads the server's resident memory from ``/proc/PID/status``:
``VmRSS`` before the load and after it, ``VmHWM`` (the kernel's high-water mark) for the peak.
Prints one JSON line per run, with the replies by status and the peak over the idle server
against the budget. Nothing leaves this machine.
"""

from __future__ import annotations

import argparse
import io
import json
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

KINDS = {"plain": "", "guided+decontaminate": "refine=guided&decontaminate=1"}


def _status_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _upload(side: int) -> bytes:
    rgb = np.zeros((side, side, 3), np.uint8)
    rgb[side // 7 : side * 6 // 7, side // 5 : side * 4 // 5] = 230  # one bright object on black
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG")
    return buf.getvalue()


def run(model: str, budget: int, query: str, clients: int, body: bytes) -> dict:
    port = _free_port()
    cmd = [sys.executable, "-m", "bgcut", "serve", "-m", model, "--port", str(port), "--device", "cpu"]
    cmd += ["--max-memory-mb", str(budget), "--max-seconds", "600", "--max-upload-mb", "64"]
    server = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        while True:
            try:
                httpx.get(f"{url}/health", timeout=1)
                break
            except httpx.TransportError:
                if server.poll() is not None:
                    raise SystemExit(server.stderr.read() if server.stderr else "the server did not start") from None
                time.sleep(0.2)
        before = _status_mb(server.pid, "VmRSS")
        t0 = time.monotonic()

        def post(_: int) -> httpx.Response:
            return httpx.post(f"{url}/remove?{query}", content=body, timeout=900)

        with ThreadPoolExecutor(clients) as pool:
            replies = list(pool.map(post, range(clients)))
        seconds = time.monotonic() - t0
        time.sleep(1)
        health = httpx.get(f"{url}/health", timeout=5).json()
        after = _status_mb(server.pid, "VmRSS")
        peak = _status_mb(server.pid, "VmHWM")
    finally:
        server.terminate()
        server.wait(timeout=60)
    codes: dict[str, int] = {}
    for r in replies:
        codes[str(r.status_code)] = codes.get(str(r.status_code), 0) + 1
    return {
        "budget_mb": budget,
        "query": query or "(png-alpha)",
        "clients": clients,
        "replies": codes,
        "seconds": round(seconds, 1),
        "rss_mb_before": round(before),
        "rss_mb_peak": round(peak),
        "rss_mb_after": round(after),
        "peak_over_idle_mb": round(peak - before),
        "admitted_peak_mb": health["memory_peak_mb"],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=12)
    ap.add_argument("--side", type=int, default=7000)
    ap.add_argument("--budgets", default="2048,6144")
    ap.add_argument("--model", default="bgcut-lite")
    args = ap.parse_args()
    body = _upload(args.side)
    for budget in (int(b) for b in args.budgets.split(",")):
        for query in KINDS.values():
            print(json.dumps(run(args.model, budget, query, args.clients, body)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
