"""A bounded load test of ``bgcut serve`` on 127.0.0.1: batching on against off, and memory over time.

    python bench/serve_load.py [--clients 8] [--seconds 60] [--images 24] [--model bgcut-lite]
                               [--mixed] [--only batched|unbatched]

Starts ``bgcut serve`` twice as a child process on a free local port: once batching
(``--max-batch 8 --max-wait-ms 5``) and once not (``--max-batch 1``). N client threads post
davis16 frames (png-alpha) back to back for the given time, then stop by themselves. Each run
prints one JSON line: requests, errors by status, throughput, p50/p99 latency, the mean batch
the server reports, and the server's resident memory before, during (its peak, sampled every
second, and its value at each minute) and after the load. Nothing leaves this machine.

``--mixed`` interleaves as many DUTS-TR photos as davis16 frames (24: 14 sizes, 244 to 400 px on
a side), so consecutive requests allocate buffers of different sizes, which is what fragments a heap. A
server that grows without bound shows it as a positive slope of resident memory over the second
half of a long run (``rss_mb_slope_per_10min``, least squares over the minute samples).
Under load each sample also holds whatever the requests in flight hold, which swings by 100 MB
from second to second; ``--rest-every S`` pauses the clients every S seconds and samples the
server with nothing in flight (``rss_mb_at_each_rest``): a leak is a rise of those.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
DAVIS = SHARED / "eval" / "davis16" / "images"
DUTS = SHARED / "duts-tr" / "images"
REST_SECONDS = 8  # --rest-every: long enough for every request in flight to finish


def _slope_per_10min(samples: list[float]) -> float | None:
    """Least-squares slope of the second half of the per-minute samples, in MB per 10 minutes."""
    tail = samples[len(samples) // 2 :]
    if len(tail) < 3:
        return None
    n = len(tail)
    mx, my = (n - 1) / 2, sum(tail) / n
    cov = sum((i - mx) * (y - my) for i, y in enumerate(tail))
    var = sum((i - mx) ** 2 for i in range(n))
    return round(10 * cov / var, 1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run(label: str, extra: list[str], args: argparse.Namespace, bodies: list[bytes]) -> dict:
    port = _free_port()
    cmd = [sys.executable, "-m", "bgcut", "serve", "--port", str(port), "-m", args.model, *extra]
    server = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.2)
        with httpx.Client(base_url=base, timeout=60) as warm:  # first forward passes, not timed
            for body in bodies[:4]:
                warm.post("/remove", content=body)
        rss_before = _rss_mb(server.pid)
        latencies: list[float] = []
        codes: dict[int, int] = {}
        lock = threading.Lock()
        stop_at = time.monotonic() + args.seconds

        go = threading.Event()  # cleared while the load rests (--rest-every)
        go.set()

        def client(k: int) -> None:
            with httpx.Client(base_url=base, timeout=120) as c:
                i = k
                while time.monotonic() < stop_at:
                    go.wait()
                    t = time.perf_counter()
                    status = c.post("/remove", content=bodies[i % len(bodies)]).status_code
                    took = time.perf_counter() - t
                    with lock:
                        codes[status] = codes.get(status, 0) + 1
                        if status == 200:
                            latencies.append(took)
                    i += args.clients

        threads = [threading.Thread(target=client, args=(k,)) for k in range(args.clients)]
        started = time.perf_counter()
        for t in threads:
            t.start()
        peak, by_minute, next_minute = rss_before, [], started + 60
        at_rest: list[float] = []
        next_rest = started + args.rest_every if args.rest_every else float("inf")
        while any(t.is_alive() for t in threads):
            rss = _rss_mb(server.pid)
            peak = max(peak, rss)
            if time.perf_counter() >= next_minute:  # growth without bound would show here
                by_minute.append(round(rss, 1))
                next_minute += 60
            if time.perf_counter() >= next_rest:
                # No request in flight for a few seconds: what the server holds between bursts.
                go.clear()
                time.sleep(REST_SECONDS)
                at_rest.append(round(_rss_mb(server.pid), 1))
                go.set()
                next_rest += args.rest_every
            time.sleep(1)
        elapsed = time.perf_counter() - started
        time.sleep(2)
        health = httpx.get(base + "/health").json()
        ok = len(latencies)
        q = statistics.quantiles(latencies, n=100) if ok > 1 else [float("nan")] * 99
        return {
            "run": label,
            "clients": args.clients,
            "seconds": round(elapsed, 1),
            "requests": sum(codes.values()),
            "status": codes,
            "images_per_s": round(ok / elapsed, 2),
            "p50_ms": round(1000 * q[49], 1),
            "p99_ms": round(1000 * q[98], 1),
            "mean_batch": health["mean_batch"],
            "rss_mb_before": round(rss_before, 1),
            "rss_mb_peak": round(peak, 1),
            "rss_mb_each_minute": by_minute,
            "rss_mb_slope_per_10min": _slope_per_10min(by_minute),
            "rss_mb_at_each_rest": at_rest,
            "rss_mb_after": round(_rss_mb(server.pid), 1),
        }
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--model", default="bgcut-lite")
    parser.add_argument("--only", choices=["batched", "unbatched"], default=None)
    parser.add_argument("--mixed", action="store_true", help="add DUTS-TR photos of many sizes")
    parser.add_argument(
        "--rest-every", type=float, default=0, help="pause the clients this often (s) and sample memory at rest"
    )
    args = parser.parse_args()
    bodies = [p.read_bytes() for p in sorted(DAVIS.glob("*.jpg"))[: args.images]]
    if args.mixed:  # interleaved, so sizes change from one request to the next
        duts = [p.read_bytes() for p in sorted(DUTS.glob("*.jpg"))[::97][: args.images]]
        bodies = [b for pair in zip(bodies, duts, strict=False) for b in pair]
    runs = {"batched": ["--max-batch", "8", "--max-wait-ms", "5"], "unbatched": ["--max-batch", "1"]}
    for label, extra in runs.items():
        if args.only in (None, label):
            print(json.dumps(run(label, extra, args, bodies)), flush=True)


if __name__ == "__main__":
    main()
