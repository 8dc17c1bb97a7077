"""Do the oldest releases that pyproject.toml allows still work? Each floor, tried on its own.

    python bench/floors.py [--skip torch] [-- PYTEST_ARGS ...]

For every ``name>=version`` in ``[project] dependencies``, installs exactly that release
(``pip install --no-deps --target``, into a temporary folder) and runs the tests with it first
on ``PYTHONPATH``, everything else as installed. pip keeps a release that is already
installed when it meets the floor, so a floor that is too low breaks users who happen to have
that release, not a fresh install. By default the tests are the ones that touch each library
most (decode, writer, post-processing, run, paste, API, CLI, Hub); give others after ``--``.
Needs a package index; prints one line per floor and exits 1 if any failed.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = [
    "tests/test_decode.py",
    "tests/test_writer.py",
    "tests/test_postprocess.py",
    "tests/test_run.py",
    "tests/test_paste.py",
    "tests/test_api.py",
    "tests/test_cli.py",
    "tests/test_hub.py",
]


def floors() -> list[tuple[str, str]]:
    import tomllib  # Python 3.11 or later; bgcut itself runs on 3.10

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    found = []
    for dep in deps:
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*>=\s*([0-9][0-9A-Za-z.]*)", dep.strip())
        if m:
            found.append((m.group(1), m.group(2)))
    return found


def oldest_release(name: str, floor: str) -> str:
    """The first release at or above ``floor`` (``4.12`` is no release of OpenCV; 4.12.0.88 is)."""
    from packaging.version import InvalidVersion, Version

    listed = subprocess.run([sys.executable, "-m", "pip", "index", "versions", name], capture_output=True, text=True)
    found = re.search(r"Available versions: (.*)", listed.stdout)
    releases = []
    for text in found.group(1).split(", ") if found else []:
        try:
            releases.append(Version(text))
        except InvalidVersion:
            continue
    above = sorted(v for v in releases if v >= Version(floor) and not v.is_prerelease)
    return str(above[0]) if above else floor


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--skip", action="append", default=[], help="a distribution not to try (repeatable)")
    ap.add_argument("pytest_args", nargs="*", help="after --: what pytest runs instead of the default tests")
    args = ap.parse_args()
    failed = 0
    for name, version in floors():
        if name in args.skip:
            print(f"{name}=={version}: skipped")
            continue
        version = oldest_release(name, version)
        with tempfile.TemporaryDirectory(prefix="bgcut-floor-") as target:
            got = subprocess.run(
                [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", target, f"{name}=={version}"],
                capture_output=True,
                text=True,
            )
            if got.returncode != 0:
                print(f"{name}=={version}: cannot install ({got.stderr.strip().splitlines()[-1:]})")
                failed += 1
                continue
            env = {**os.environ, "PYTHONPATH": target}
            ran = subprocess.run(
                [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *(args.pytest_args or TESTS)],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
            )
            last = (ran.stdout.strip().splitlines() or ["no output"])[-1]
            print(f"{name}=={version}: {'ok' if ran.returncode == 0 else 'FAILED'}: {last}")
            failed += ran.returncode != 0
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
