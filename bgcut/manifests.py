"""Reading a manifest back: the JSON lines that ``pipeline/report.Manifest`` appends, one row per input.

Two readers need the same rules, a rerun's resume (the facts of the outputs it skips) and
``bgcut review`` (the page's rows): a file may hold several runs, so an input's last row is the
one that counts, and a damaged line (a killed run's half-written last) is passed over.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path


def last_rows(path: Path, keep: Callable[[dict], bool] = lambda row: True) -> dict[str, dict]:
    """Each input's last row that ``keep`` accepts, in the order the inputs first appear.

    Raises ``OSError`` when the file cannot be read; the caller decides what that means."""
    last: dict[str, dict] = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                row = json.loads(line)
            except ValueError:
                continue  # a killed run's half-written last line
            if isinstance(row, dict) and isinstance(row.get("input"), str) and keep(row):
                last[row["input"]] = row
    return last
