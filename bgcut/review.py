"""``bgcut review``: one self-contained page to look through a finished run, worst cut-outs first.

From an output folder's manifest: every cut-out as a thumbnail on a checkerboard beside its
source, sorted by doubt (``pipeline/doubt.py``) with its parts, filtered by doubt and folder,
shown a page at a time so ten thousand entries stay responsive. Keys mark rejects, and the page
exports them as a plain list of inputs, one per line, which ``bgcut`` reads back from stdin
(``bgcut - -o redo -m isnet-general < rejects.txt``).

Thumbnails are JPEGs in a folder beside the page, named by the file they show and its size and
time, so a second ``bgcut review`` makes only the new ones. No server is needed: open the page.
"""

from __future__ import annotations

import hashlib
import html
import io
import json
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from .errors import UsageError
from .images import checkerboard
from .manifests import last_rows
from .storage import atomic_write

THUMB = 160  # pixels on the longer side
STATUSES = ("done", "skipped", "empty")  # rows that have an output to look at (or none, for empty)
PAGE = Path(__file__).with_name("review.html")


@dataclass
class ReviewSummary:
    entries: int = 0
    thumbnails_made: int = 0
    thumbnails_kept: int = 0
    unreadable: int = 0  # outputs or sources that could not be read (shown without a thumbnail)
    page: Path | None = None


def _rows(manifest: Path) -> list[dict]:
    """The last row of each input (a rerun's rows come after the first run's)."""
    try:
        last = last_rows(manifest)
    except OSError as e:
        raise UsageError(f"--manifest {manifest}: cannot read it: {e.strerror or e}") from None
    return [r for r in last.values() if r.get("status") in STATUSES]


def _thumbnail(path: Path, folder: Path, summary: ReviewSummary) -> str | None:
    """The thumbnail of ``path`` (made if missing), as a name relative to the page; None if unreadable."""
    try:
        stat = path.stat()
    except OSError:
        summary.unreadable += 1
        return None
    key = hashlib.sha1(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:20]
    target = folder / f"{key}.jpg"
    if target.is_file():
        summary.thumbnails_kept += 1
        return f"{folder.name}/{target.name}"
    try:
        with Image.open(path) as im:
            im.draft("RGB", (THUMB * 2, THUMB * 2))  # JPEG sources: decode at a fraction of full size
            im.thumbnail((THUMB, THUMB))
            if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                rgba = np.asarray(im.convert("RGBA"), np.float32)
                a = rgba[:, :, 3:] / 255.0
                board = checkerboard(im.width, im.height, cell=8)
                pixels = (rgba[:, :, :3] * a + board * (1 - a) + 0.5).astype(np.uint8)
                shown = Image.fromarray(pixels)
            else:
                shown = im.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError):
        summary.unreadable += 1
        return None
    buf = io.BytesIO()
    shown.save(buf, "JPEG", quality=85)
    atomic_write(target, buf.getvalue())
    summary.thumbnails_made += 1
    return f"{folder.name}/{target.name}"


def _folder_of(row: dict, out: Path) -> str:
    """The entry's folder inside the output, for the folder filter ("." for the top)."""
    outputs = row.get("outputs") or []
    if outputs:
        try:
            rel = Path(outputs[0]).resolve().relative_to(out.resolve())
            return str(PurePosixPath(*rel.parts[:-1])) or "."
        except ValueError:
            pass
    return str(PurePosixPath(row["input"]).parent)


def make_review(out: str | Path, manifest: str | Path, page: str | Path | None = None) -> ReviewSummary:
    """Write the review page of the run that filled ``out`` (its rows in ``manifest``).

    ``page`` defaults to ``OUT/review.html``; thumbnails go into ``PAGE_STEM_files/`` beside it.

    Raises:
        UsageError: ``out`` is not a folder, or the manifest cannot be read or holds no cut-outs.
    """
    out, manifest = Path(out), Path(manifest)
    if not out.is_dir():
        raise UsageError(f"{out} is not a folder of outputs (bgcut review reads a finished run's folder)")
    page = Path(page) if page is not None else out / "review.html"
    rows = _rows(manifest)
    if not rows:
        raise UsageError(f"--manifest {manifest} holds no done or skipped rows to review")
    folder = page.with_name(page.stem + "_files")
    folder.mkdir(parents=True, exist_ok=True)
    summary = ReviewSummary(entries=len(rows), page=page)
    entries = []
    for row in rows:
        outputs = row.get("outputs") or []
        entries.append(
            {
                "input": row["input"],
                "folder": _folder_of(row, out),
                "output": outputs[0] if outputs else None,
                "status": row["status"],
                "doubt": row.get("doubt"),
                "parts": row.get("doubt_parts") or {},
                "src": _thumbnail(Path(row["input"]), folder, summary),
                "cut": _thumbnail(Path(outputs[0]), folder, summary) if outputs else None,
            }
        )
    data = json.dumps(entries, ensure_ascii=True).replace("</", "<\\/")  # never ends the script early
    text = PAGE.read_text(encoding="utf-8")
    text = text.replace("__TITLE__", html.escape(f"bgcut review: {out}"))
    text = text.replace("__ENTRIES__", data)
    atomic_write(page, text.encode("utf-8"))
    return summary
