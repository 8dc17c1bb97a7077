"""The CPU training relay of ``bgcut-s`` (issue 32): the state a fresh machine needs, committed.

Each session trains in the background (``nice -n 19``), stops about 15 minutes before its end, and
commits the run's best EMA weights with their config and validation history to
``weights/bgcut-s/relay/`` (at most 25 MB a session). The next session resumes from the run folder
when its machine still has it (``--resume``), else from the committed weights (``--init``):

    python weights/recipes/relay.py commit runs/relay          # add the state to weights/bgcut-s/relay/
    python weights/recipes/relay.py command                    # print the command that goes on from it

``tests/test_student.py::test_the_relay_goes_on_from_the_committed_state`` runs a few steps from
the committed state on generated pairs, through the same ``bgcut train`` command line.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
from pathlib import Path

HERE = Path(__file__).resolve().parent
RELAY = HERE.parent / "bgcut-s" / "relay"
MAX_BYTES = 25 * 2**20  # what one session may add to the repository
DATA = "../shared/data/duts-tr"


def _best(history: list[dict]) -> float:
    """The training loop's own criterion for its best epoch: maxF - MAE."""
    return max((row["maxF"] - row["mae"] for row in history), default=float("-inf"))


def commit(run: Path, relay: Path = RELAY) -> None:
    """Add ``run``'s validations to the relay's history, and its best weights when they beat the
    committed ones: a segment whose schedule restarted can end below where it began."""
    weights = run / "best.safetensors"
    if not weights.is_file():
        raise SystemExit(f"{run}: no best.safetensors yet (no epoch has finished)")
    if weights.stat().st_size > MAX_BYTES:
        size = weights.stat().st_size / 2**20
        raise SystemExit(f"{weights} is {size:.1f} MiB, over the {MAX_BYTES >> 20} MiB one session may add")
    relay.mkdir(parents=True, exist_ok=True)
    before = json.loads((relay / "history.json").read_text()) if (relay / "history.json").is_file() else []
    rows = json.loads((run / "history.json").read_text())
    # A run is known by its first validation: a run resumed on the same machine (--resume) keeps
    # it, and its rows replace the ones committed before; a run started afresh adds a segment.
    run_id = hashlib.sha256(json.dumps(rows[0], sort_keys=True).encode()).hexdigest()[:12]
    earlier = [row.get("segment", 1) for row in before if row.get("run_id") == run_id]
    before = [row for row in before if row.get("run_id") != run_id]
    segment = earlier[0] if earlier else max((row.get("segment", 1) for row in before), default=0) + 1
    new = [{**row, "segment": segment, "run_id": run_id} for row in rows]
    if _best(new) > _best(before):
        shutil.copyfile(weights, relay / "model.safetensors")
        config = json.loads((run / "config.json").read_text()) if (run / "config.json").is_file() else {}
        (relay / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        verdict = f"weights replaced: maxF - MAE {_best(new):.4f} > {_best(before):.4f}"
    else:
        verdict = f"weights kept: this run's best maxF - MAE {_best(new):.4f} <= the committed {_best(before):.4f}"
    (relay / "history.json").write_text(json.dumps(before + new, indent=1) + "\n")
    # The settings to go on with are the last segment's, whether or not its weights were kept.
    config = json.loads((run / "config.json").read_text()) if (run / "config.json").is_file() else {}
    if training := config.get("training"):
        (relay / "training.json").write_text(json.dumps(training, indent=2) + "\n")
    print(f"committed {run} -> {relay} (segment {segment}, {len(new)} epochs; {verdict})")


def command(relay: Path = RELAY) -> str:
    """The ``bgcut train`` line that goes on from the committed state, with the last segment's settings."""
    settings = relay / "training.json"
    if settings.is_file():
        training = json.loads(settings.read_text())
    else:
        training = json.loads((relay / "config.json").read_text())["training"]
    args = [
        "nice -n 19 bgcut train",
        f"--images {DATA}/images --masks {DATA}/masks -o runs/relay",
        f"-m {training['model']}",
        f"--arch-args '{json.dumps(training['arch_args'])}'" if training["arch_args"] else "",
        f"--size {training['size']} -b {training['batch_size']} --lr {training['lr']} --ema {training['ema']}",
        f"--epochs {training['epochs']} --device cpu -j 1 --cache-dir runs/cache",
        f"--backgrounds {training['backgrounds']}" if training.get("backgrounds") else "",
        f"--boundary-gain {training['boundary_gain']}" if training.get("boundary_gain") else "",
        "--resume" if Path("runs/relay/last.pt").is_file() else f"--init {relay / 'model.safetensors'}",
    ]
    return " ".join(a for a in args if a)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="what", required=True)
    sub.add_parser("commit").add_argument("run", type=Path)
    sub.add_parser("command")
    args = ap.parse_args(argv)
    if args.what == "commit":
        commit(args.run)
    else:
        print(command())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
