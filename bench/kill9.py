"""After kill -9 and a rerun, every input has a row with its facts (issue 26's manifest check).

    python bench/kill9.py IMAGES [--trials 5] [--model bgcut-lite] [--seed 0]

Each trial starts ``bgcut IMAGES -o OUT --manifest OUT.jsonl`` in a fresh folder, kills it with
SIGKILL at a random moment once some outputs exist, reruns the same command to the end, and then
counts, from the manifest, the inputs whose last row is ``done`` or ``skipped`` with width, height
and fg_fraction. It prints one JSON line per trial and exits 1 if any input lacks such a row.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def trial(images: Path, model: str, rng: random.Random, total: int) -> dict:
    work = Path(tempfile.mkdtemp(prefix="bgcut-kill9-"))
    out, manifest = work / "out", work / "run.jsonl"
    cmd = [sys.executable, "-m", "bgcut", str(images), "-o", str(out), "-m", model, "--manifest", str(manifest), "-q"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    target = rng.randint(1, max(1, total - 2))  # kill once this many outputs exist
    while proc.poll() is None and len(list(out.rglob("*.png"))) < target:
        time.sleep(0.005)
    killed_at = len(list(out.rglob("*.png")))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    rerun = subprocess.run(cmd, capture_output=True, text=True)
    last: dict[str, dict] = {}
    for line in manifest.read_text().splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        last[row["input"]] = row

    def has_facts(r: dict) -> bool:
        return bool(r.get("width") and r.get("height")) and r.get("fg_fraction") is not None

    complete = [r for r in last.values() if r["status"] in ("done", "skipped") and has_facts(r)]
    return {"killed_at_outputs": killed_at, "rerun_exit": rerun.returncode, "inputs": total,
            "rows": len(last), "rows_with_facts": len(complete)}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("images", type=Path)
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--model", default="bgcut-lite")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    total = sum(1 for p in args.images.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    rng = random.Random(args.seed)
    ok = True
    for i in range(args.trials):
        result = trial(args.images, args.model, rng, total)
        print(json.dumps({"trial": i + 1, **result}), flush=True)
        ok = ok and result["rows_with_facts"] == total and result["rerun_exit"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
