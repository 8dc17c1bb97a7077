"""The CPU training relay of ``bgcut-s`` (issue 32): the state a fresh machine needs, committed.

Each session trains in the background (``nice -n 19``), stops about 15 minutes before its end, and
commits to the repository:

- ``weights/bgcut-s/relay/state.safetensors``: the run's EMA weights where it stopped, with its
  epoch and step (``bgcut train`` writes it each epoch). A fresh machine goes on from it with
  ``--resume-from``, at the same point of the learning-rate schedule.
- ``bgcut/models/weights/bgcut-s.safetensors``: the best weights so far, embedded in the package
  (``-m bgcut-s``), replaced only when a candidate of this run (any epoch's weights, kept by the
  loop in ``epochs/``, its best epoch by the held-out split, or where it stopped) beats them on
  all three sets taken together: the DUTS-TR held-out split, davis16 and human-seg (mean of
  maxF - MAE). The sha256 in the registry and in ``weights/bgcut-s/config.json`` is rewritten
  with it.
- ``history.json`` (every validation, by segment, with davis16 and human-seg for each epoch whose
  weights were scored), ``scores.json`` (the embedded weights' scores),
  ``config.json`` (their config and training settings), ``training.json`` (the settings to go on with).

    python weights/recipes/relay.py commit runs/relay          # add the state to the repository
    python weights/recipes/relay.py command                    # print the command that goes on from it
    python weights/recipes/relay.py record RUN --note TEXT     # a run stopped by hand: its rows only

It needs the workspace's data (``../shared``); it is a development recipe, not part of bgcut.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
RELAY = HERE.parent / "bgcut-s" / "relay"
EMBEDDED = ROOT / "bgcut" / "models" / "weights" / "bgcut-s.safetensors"
REGISTRY = ROOT / "bgcut" / "models" / "effnet_unet.py"
CARD = HERE.parent / "bgcut-s" / "config.json"  # what the Hub repo holds beside the weights
# fp16 was measured against fp32 on the step-1 weights: the same maxF and MAE to four decimals on
# davis16 and human-seg, where int8 cost 0.003 MAE on davis16 (weights/bgcut-s/README.md).
STORAGE = "fp16"
MAX_BYTES = 25 * 2**20  # what one session may add to the repository
DATA = "../shared/data/duts-tr"
EVAL = Path("../shared/data/eval")
OUT_OF_DOMAIN = ("davis16", "human-seg")
HELD_OUT = "DUTS-TR"
# The registry line this recipe rewrites; the marker keeps it from touching any other sha256.
MARK = "  # set by weights/recipes/relay.py"
SHA_LINE = re.compile(r'sha256=(None|"[0-9a-f]{64}"),' + re.escape(MARK))

Scores = dict[str, dict[str, float]]


def _merit(scores: Scores) -> float:
    """One number to rank weights by: the mean over the sets of maxF - MAE."""
    return sum(s["maxF"] - s["mae"] for s in scores.values()) / len(scores)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def evaluate(weights: Path) -> Scores:
    """maxF and MAE on the out-of-domain sets, through ``bgcut eval`` (the inference pipeline)."""
    scores = {}
    for name in OUT_OF_DOMAIN:
        folder = EVAL / name
        cmd = ["bgcut", "eval", "--weights", str(weights), "--images", str(folder / "images"),
               "--masks", str(folder / "masks"), "--json", "-j", "1"]  # fmt: skip
        result = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
        scores[name] = {"maxF": result["maxF"], "mae": result["mae"]}
    return scores


def _ship(weights: Path, embedded: Path, registry: Path, card: Path) -> str:
    """Store ``weights`` as the embedded bgcut-s (``STORAGE``) and record its sha256 in the
    registry and the model card's config."""
    _store(weights, embedded)
    sha = _sha256(embedded)
    source, n = SHA_LINE.subn(f'sha256="{sha}",{MARK}', registry.read_text())
    if n != 1:
        raise SystemExit(f"{registry}: expected one sha256 line marked for relay.py, found {n}")
    registry.write_text(source)
    config = json.loads(card.read_text())
    config["sha256"] = sha
    card.write_text(json.dumps(config, indent=2) + "\n")
    return sha


def _segment_rows(run: Path, before: list[dict]) -> tuple[list[dict], list[dict], int]:
    """``run``'s validations as a relay segment, and the committed rows they do not replace.

    A run is known by its first validation: a run resumed on the same machine (--resume) keeps
    it, and its rows replace the ones committed before; a run started afresh adds a segment."""
    rows = json.loads((run / "history.json").read_text()) if (run / "history.json").is_file() else []
    if not rows:
        raise SystemExit(f"{run}: no history yet (no epoch has finished)")
    run_id = hashlib.sha256(json.dumps(rows[0], sort_keys=True).encode()).hexdigest()[:12]
    earlier = [row.get("segment", 1) for row in before if row.get("run_id") == run_id]
    before = [row for row in before if row.get("run_id") != run_id]
    segment = earlier[0] if earlier else max((row.get("segment", 1) for row in before), default=0) + 1
    return [{**row, "segment": segment, "run_id": run_id} for row in rows], before, segment


def record(run: Path, note: str, relay: Path = RELAY) -> None:
    """Add the validations of a run that was stopped by hand before it exported (an ablation cut
    short) to the relay's history, as a segment with ``note``; its weights are not committed."""
    before = json.loads((relay / "history.json").read_text()) if (relay / "history.json").is_file() else []
    new, before, segment = _segment_rows(run, before)
    new = [{**row, "note": note} for row in new]
    (relay / "history.json").write_text(json.dumps(before + new, indent=1) + "\n")
    print(f"recorded {run} in {relay / 'history.json'} (segment {segment}, {len(new)} epochs; weights not committed)")


def _store(weights: Path, target: Path) -> None:
    """``weights`` written to ``target`` in ``STORAGE`` (half the bytes of fp32; the same scores
    to four decimals), with the file's metadata (a state's epoch and step) kept."""
    sys.path.insert(0, str(ROOT))
    from safetensors import safe_open

    from bgcut.models import read_state_dict, save_tensors
    from bgcut.models._weights import quantize

    with safe_open(str(weights), "pt") as f:
        meta = f.metadata()
    tmp = target.with_name(target.name + ".tmp")
    save_tensors(quantize(read_state_dict(weights), STORAGE), tmp, metadata=meta)
    tmp.replace(target)


def _tensors_digest(path: Path) -> str:
    """The weights' own digest, names and values, whatever the file's metadata: the loop's
    best.safetensors and that epoch's state hold the same tensors, and are scored once."""
    from safetensors import safe_open

    digest = hashlib.sha256()
    with safe_open(str(path), "np") as f:
        for name in sorted(f.keys()):
            digest.update(name.encode())
            digest.update(f.get_tensor(name).tobytes())
    return digest.hexdigest()


def _candidates(run: Path, rows: list[dict]) -> list[tuple[Path, int]]:
    """The run's weights files, each with the index of its validation row, each file once.

    The held-out split ranks the epochs one way (``best.safetensors``) and photos unlike DUTS-TR
    can rank them another (davis16 moved by 0.03 maxF from one epoch to the next), so every
    epoch's copy (``epochs/epoch-NNN.safetensors``) is a candidate, beside where the run stopped."""
    at = {row["epoch"]: i for i, row in enumerate(rows)}
    best = max(range(len(rows)), key=lambda i: rows[i]["maxF"] - rows[i]["mae"])
    found = [
        (p, at.get(int(p.stem.removeprefix("epoch-")))) for p in sorted((run / "epochs").glob("epoch-*.safetensors"))
    ]
    found += [(run / "best.safetensors", best), (run / "state.safetensors", len(rows) - 1)]
    unique, seen = [], set()
    for path, i in found:
        if i is not None and path.is_file() and (digest := _tensors_digest(path)) not in seen:
            seen.add(digest)
            unique.append((path, i))
    return unique


def commit(
    run: Path,
    relay: Path = RELAY,
    embedded: Path = EMBEDDED,
    registry: Path = REGISTRY,
    card: Path = CARD,
    score: Callable[[Path], Scores] = evaluate,
) -> None:
    """Add ``run``'s state and validations to the relay, and ship a candidate of it when it beats
    the embedded weights: a segment whose schedule restarted can end below where it began."""
    state = run / "state.safetensors"
    if not state.is_file():
        raise SystemExit(f"{run}: no state.safetensors yet (no epoch has finished)")
    if not (run / "config.json").is_file():
        raise SystemExit(f"{run}: no config.json yet: commit a run once it has stopped and exported")
    relay.mkdir(parents=True, exist_ok=True)
    before = json.loads((relay / "history.json").read_text()) if (relay / "history.json").is_file() else []
    new, before, segment = _segment_rows(run, before)
    rows = [{k: v for k, v in row.items() if k not in ("segment", "run_id")} for row in new]

    epochs = run / "epochs"
    if epochs.is_dir() and not (epochs / "config.json").is_file():
        shutil.copyfile(run / "config.json", epochs / "config.json")  # a weights file is read with its folder's config
    scored = []
    for path, i in _candidates(run, rows):
        outside = score(path)
        new[i].update(outside)  # the history keeps each epoch's scores outside DUTS-TR too
        scores = {HELD_OUT: {"maxF": rows[i]["maxF"], "mae": rows[i]["mae"]}, **outside}
        scored.append((_merit(scores), path, rows[i], scores))
    merit, path, row, scores = max(scored, key=lambda s: s[0])
    shipped = json.loads((relay / "scores.json").read_text()) if (relay / "scores.json").is_file() else None
    if shipped is not None and not (embedded.is_file() and shipped.get("sha256") == _sha256(embedded)):
        shipped = None  # the record is not of the file in the package: judge the candidate alone
    # At most the state and one candidate in fp32 (the stored copy is smaller), checked before writing.
    added = state.stat().st_size + path.stat().st_size
    if added > MAX_BYTES:
        mib = added / 2**20
        raise SystemExit(f"this commit could add {mib:.1f} MiB, over the {MAX_BYTES >> 20} MiB one session may add")
    if shipped is None or merit > _merit(shipped["scores"]):
        config = json.loads((run / "config.json").read_text())
        sha = _ship(path, embedded, registry, card)
        config["sha256"], config["storage"] = sha, STORAGE
        (relay / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        record = {"sha256": sha, "segment": segment, "epoch": row["epoch"], "file": path.name, "scores": scores}
        (relay / "scores.json").write_text(json.dumps(record, indent=1) + "\n")
        old = f"{_merit(shipped['scores']):.4f}" if shipped else "none"
        verdict = f"shipped {path.name} (epoch {row['epoch']}): mean maxF - MAE {merit:.4f} > {old}"
    else:
        kept = _merit(shipped["scores"])
        verdict = f"kept the embedded weights: this run's best mean maxF - MAE {merit:.4f} <= {kept:.4f}"
    _store(state, relay / "state.safetensors")  # the state to go on from
    (relay / "history.json").write_text(json.dumps(before + new, indent=1) + "\n")
    # The settings to go on with are the last segment's, whether or not its weights were shipped.
    if training := json.loads((run / "config.json").read_text()).get("training"):
        (relay / "training.json").write_text(json.dumps(training, indent=2) + "\n")
    print(f"committed {run} -> {relay} (segment {segment}, {len(new)} epochs; {verdict})")


def command(relay: Path = RELAY, run: Path = Path("runs/relay")) -> str:
    """The ``bgcut train`` line that goes on from the committed state, with the last segment's settings."""
    training = json.loads((relay / "training.json").read_text())
    if (run / "last.pt").is_file():
        start = "--resume"  # this machine still has the run folder: the optimiser's state too
    elif (relay / "state.safetensors").is_file():
        start = f"--resume-from {relay / 'state.safetensors'}"
    else:
        start = f"--init {EMBEDDED}"
    args = [
        "nice -n 19 bgcut train",
        f"--images {DATA}/images --masks {DATA}/masks -o {run}",
        f"-m {training['model']}",
        f"--arch-args '{json.dumps(training['arch_args'])}'" if training["arch_args"] else "",
        f"--size {training['size']} -b {training['batch_size']} --lr {training['lr']} --ema {training['ema']}",
        f"--epochs {training['epochs']} --device cpu -j 1 --cache-dir runs/cache",
        f"--backgrounds {training['backgrounds']}" if training.get("backgrounds") else "",
        f"--boundary-gain {training['boundary_gain']}" if training.get("boundary_gain") else "",
        start,
    ]
    return " ".join(a for a in args if a)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="what", required=True)
    sub.add_parser("commit").add_argument("run", type=Path)
    rec = sub.add_parser("record", help="add a run stopped by hand (no export) to the history only")
    rec.add_argument("run", type=Path)
    rec.add_argument("--note", required=True, help="what the run was, and why it stopped")
    sub.add_parser("command")
    args = ap.parse_args(argv)
    if args.what == "commit":
        commit(args.run)
    elif args.what == "record":
        record(args.run, args.note)
    else:
        print(command())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
