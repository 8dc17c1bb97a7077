"""Byte-identical outputs before and after a refactor: hash what every format writes.

    python bench/identical.py record  /tmp/before.json   # on the old commit
    python bench/identical.py record  /tmp/after.json    # on the new one
    python bench/identical.py compare /tmp/before.json /tmp/after.json

``--model NAME`` runs every variant with that model (``-m bgcut-lite``: a minute instead of half
an hour with the 1024 px default, for changes to the engine rather than to a model).

``record`` runs ``bgcut`` (the installed command of the checkout it is run from) over davis16
once per variant below, every output format and the post-processing and background options
that take their own code paths, plus the Python API (``Remover.remove_batch``) on a few
images, and writes the sha256 of every output file. ``compare`` prints the variants that
differ and exits 1 if any does.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "data"
IMAGES = SHARED / "eval" / "davis16" / "images"
BACKGROUND = SHARED / "backgrounds" / "test_10081.jpg"

VARIANTS: dict[str, list[str]] = {
    "png-alpha": ["--format", "png-alpha"],
    "mask": ["--format", "mask"],
    "crop": ["--format", "crop", "--margin", "5%"],
    "crop-per-object": ["--format", "crop", "--per-object", "--min-area", "200"],
    "webp": ["--format", "webp"],
    "jpg": ["--format", "jpg"],
    "jpg-bg-colour": ["--format", "jpg", "--bg", "#3366ff"],
    "png-alpha-bg-photo": ["--format", "png-alpha", "--bg", str(BACKGROUND)],
    "mask-post": [
        "--format",
        "mask",
        "--binary",
        "--keep",
        "largest",
        "--fill-holes",
        "--erode",
        "2",
        "--dilate",
        "3",
        "--feather",
        "2",
        "-t",
        "0.4",
    ],  # fmt: skip
}
API_FORMATS = ("png-alpha", "mask", "crop", "webp", "jpg")


def _hashes(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    }


def _api_hashes(images: list[Path], model: str | None) -> dict[str, str]:
    # In a child process, so that the checkout being measured is the one imported.
    code = (
        "import hashlib, io, json, sys\n"
        "from bgcut import Remover\n"
        f"r = Remover(model={model!r}, device='cpu')\n"
        "out = {}\n"
        f"for fmt in {API_FORMATS!r}:\n"
        "    for p, im in zip(sys.argv[1:], r.remove_batch(sys.argv[1:], format=fmt)):\n"
        "        out[fmt + '/' + p.rsplit('/', 1)[-1]] = hashlib.sha256(im.tobytes()).hexdigest()\n"
        "print(json.dumps(out))\n"
    )
    done = subprocess.run([sys.executable, "-c", code, *map(str, images)], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def record(target: Path, model: str | None = None) -> None:
    result: dict[str, dict[str, str]] = {}
    with tempfile.TemporaryDirectory(prefix="bgcut-identical-") as tmp:
        for name, args in VARIANTS.items():
            out = Path(tmp, name)
            cmd = ["bgcut", str(IMAGES), "-o", str(out), "--device", "cpu", "--quiet", *args]
            cmd += ["-m", model] if model else []
            subprocess.run(cmd, check=True)
            result[name] = _hashes(out)
            print(f"{name}: {len(result[name])} files", file=sys.stderr)
    result["api"] = _api_hashes(sorted(IMAGES.glob("*.jpg"))[:8], model)
    target.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")


def compare(before: Path, after: Path) -> int:
    a, b = json.loads(before.read_text()), json.loads(after.read_text())
    bad = 0
    for name in sorted(set(a) | set(b)):
        x, y = a.get(name, {}), b.get(name, {})
        differ = [k for k in sorted(set(x) | set(y)) if x.get(k) != y.get(k)]
        state = "identical" if not differ else f"{len(differ)} differ (first: {differ[0]})"
        print(f"{name:20s} {len(x):4d} / {len(y):4d} files  {state}")
        bad += bool(differ)
    return 1 if bad else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("record")
    r.add_argument("target", type=Path)
    r.add_argument("--model", "-m", help="run every variant with this model (default: bgcut's default)")
    c = sub.add_parser("compare")
    c.add_argument("before", type=Path)
    c.add_argument("after", type=Path)
    args = parser.parse_args()
    if args.cmd == "record":
        record(args.target, args.model)
    else:
        sys.exit(compare(args.before, args.after))


if __name__ == "__main__":
    main()
