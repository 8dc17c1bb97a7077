"""What a run reports: its summary, its manifest (one JSON line per input) and the rows of both.

``Recorder`` is the one place a row is counted, said and written; the local engine's writer
threads add their rows to the manifest themselves, as each output is renamed into place.
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path, PurePosixPath
from typing import TextIO

from tqdm import tqdm

from .. import codecs
from ..config import RunOptions
from ..errors import UsageError
from ..manifests import last_rows
from ..storage import append_lines, is_url
from .output import Row
from .reader import SAME_FILE, Source
from .target import OutputTarget


@dataclass
class RunSummary:
    done: int = 0
    skipped: int = 0
    empty: int = 0
    failed: int = 0
    seconds: float = 0.0
    interrupted: bool = False
    rows: list[Row] = field(default_factory=list)
    manifest_error: str | None = None  # the manifest could not be written (the outputs were)
    no_inputs: bool = False  # the inputs held no image at all
    passed_over: dict[str, int] = field(default_factory=dict)  # files in folders not read, by extension
    review: int = 0  # rows above --max-doubt

    @property
    def processed(self) -> int:
        return self.done + self.empty

    @property
    def images_per_second(self) -> float:
        return self.processed / self.seconds if self.seconds > 0 else 0.0

    @property
    def ok(self) -> bool:
        return self.failed == 0 and not self.interrupted and self.manifest_error is None and not self.no_inputs

    @property
    def video_frames(self) -> tuple[int, int]:
        """(videos done, their frames): a video is one row but many images' work."""
        done = [r.frames for r in self.rows if r.frames is not None and r.status == "done"]
        return len(done), sum(done)

    def line(self) -> str:
        parts = [f"{self.done} done", f"{self.skipped} skipped", f"{self.failed} failed"]
        if self.empty:
            parts.insert(1, f"{self.empty} with no foreground")
        if self.review:
            parts.append(f"{self.review} to review (doubt above --max-doubt)")
        if self.passed_over:
            kinds = ", ".join(f"{n} {ext}" for ext, n in sorted(self.passed_over.items()))
            parts.append(f"{sum(self.passed_over.values())} passed over ({kinds})")
        tail = " (interrupted)" if self.interrupted else ""
        videos, frames = self.video_frames
        if not frames:
            rate = f"{self.images_per_second:.2f} images/s"
        else:
            per_s = 1 / self.seconds if self.seconds > 0 else 0.0
            rate = f"{frames} video frames, {frames * per_s:.2f} frames/s"
            if self.processed > videos:
                rate = f"{(self.processed - videos) * per_s:.2f} images/s; " + rate
        return f"bgcut: {', '.join(parts)} in {self.seconds:.1f}s ({rate}){tail}"


def log_to_stderr(msg: str) -> None:
    tqdm.write(msg, file=sys.stderr)


_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")


def printable(text: str) -> str:
    """``text`` on one line: control characters (a newline in a file name) and undecodable bytes
    (a non-UTF-8 name) as backslash escapes, so one error is always one line."""

    def escape(m: re.Match[str]) -> str:
        c = ord(m.group())
        return f"\\x{c - 0xDC00:02x}" if 0xDC80 <= c <= 0xDCFF else repr(m.group())[1:-1]

    return _UNPRINTABLE.sub(escape, text)


_ROW_FIELDS = tuple(f.name for f in fields(Row))


def _json_line(row: Row) -> str:
    """One manifest line, UTF-8 where the text allows; a non-UTF-8 file name is written with
    JSON escapes (``"\\udcff"``), which ``json.loads`` + ``os.fsencode`` turn back into its bytes."""
    # The row's fields as they are, not ``asdict``'s deep copy: the line is all that is made of
    # them, and that copy was most of the time of a resumed run over 200,000 finished files.
    facts = {name: getattr(row, name) for name in _ROW_FIELDS}
    for key in OPTIONAL_FIELDS:  # a line without them is as it was before they existed
        if facts[key] is None:
            del facts[key]
    line = json.dumps(facts, ensure_ascii=False)
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:
        line = json.dumps(facts, ensure_ascii=True)
    return line + "\n"


OPTIONAL_FIELDS = ("frames", "doubt", "doubt_parts", "review")
FACTS = ("width", "height", "bbox", "fg_fraction", "model", "weights_sha256", "doubt", "doubt_parts")


def _earlier_facts(path: Path) -> dict[str, dict]:
    """Each input's facts from the rows already in a manifest file (an earlier run's), for the rows
    of outputs a rerun skips: its last row that has them (a failed row has none)."""
    if not path.is_file():  # not yet written, or a device (/dev/full would be read forever)
        return {}
    try:
        rows = last_rows(path, keep=lambda row: row.get("width") is not None)
    except OSError:
        return {}  # unreadable: each skipped output's facts are read back from the output instead
    return {name: {k: row.get(k) for k in FACTS} for name, row in rows.items()}


def skipped_row(target: OutputTarget, source: Source, manifest: Manifest) -> Row:
    """The row of an output that exists already, with its facts: from the manifest's earlier row,
    or, when that row was lost (a run killed between the rename and the row), read back from the
    output itself. Only when a manifest is written: reading thousands of outputs costs time."""
    row = Row(source.display, [str(target.output_path(source))], status="skipped")
    if not manifest.path:
        return row
    earlier = manifest.earlier.get(source.display)
    if earlier is not None:
        return replace(row, **earlier)
    facts = target.read_back(source)
    if facts is None:
        return replace(row, warning="no earlier manifest row, and this format's output cannot tell its facts")
    return replace(row, **facts)


def manifest_path(run: RunOptions) -> str | None:
    """The manifest file: with ``--shard I/N``, ``run.jsonl`` becomes ``run.shard-I-of-N.jsonl``.

    Jobs of an array often share a folder; each appends to its own part, and ``cat`` joins them.
    """
    if not run.manifest or run.shard is None:
        return run.manifest
    folder, sep, name = run.manifest.rpartition("/")  # strings, not Path: "s3://b/m.jsonl" must keep its "//"
    stem, dot, ext = name.rpartition(".") if "." in name else (name, "", "")
    index, count = run.shard
    return f"{folder}{sep}{stem}.shard-{index}-of-{count}{dot}{ext}"


class Manifest:
    """The ``--manifest`` file, checked and opened before any work.

    A local manifest is appended line by line; an object store cannot append, so a URL manifest
    collects its lines and is written once, at the end. A write that fails later (a full disk)
    is reported once; the run goes on without the manifest and its exit status says so.
    """

    def __init__(self, path: str | None, log: Callable[[str], None]) -> None:
        self.path, self.log = path, log
        self.lock = threading.Lock()
        self.earlier: dict[str, dict] = {}  # input -> the facts an earlier run's row in this file gave
        self.error: str | None = None
        self.file: TextIO | None = None
        self.remote_lines: list[str] | None = [] if path and is_url(path) else None
        if not path or self.remote_lines is not None:
            return
        target = Path(path)
        if target.is_dir():
            raise UsageError(f"--manifest {path} is a folder; give a file name, e.g. {target / 'run.jsonl'}")
        self.earlier = _earlier_facts(target)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            self.file = open(target, "a", encoding="utf-8")  # noqa: SIM115 - closed by close()
            if not _ends_its_last_line(target):
                # A line cut short (a full disk, a hand edit) would swallow this run's first row.
                self.file.write("\n")
        except OSError as e:
            raise UsageError(f"--manifest {path}: cannot write it: {e.strerror or e}") from None

    def add(self, row: Row) -> None:
        """Append ``row``'s line; safe from the writer threads, each as its output is renamed into
        place, so that a killed run's manifest has a row for every finished output."""
        if self.file is None and self.remote_lines is None:
            return  # no --manifest: no line to make
        line = _json_line(row)
        with self.lock:
            if self.remote_lines is not None:
                self.remote_lines.append(line)
            elif self.file is not None and self.error is None:
                try:
                    self.file.write(line)
                    self.file.flush()
                except OSError as e:
                    self._failed(e)

    def _failed(self, e: OSError) -> None:
        self.error = f"cannot write the manifest: {e.strerror or e}"
        self.log(f"bgcut: error: {printable(str(self.path))}: {self.error}; the outputs are still written")

    def close(self) -> None:
        if self.file is not None:
            try:
                self.file.close()
            except OSError as e:
                if self.error is None:
                    self._failed(e)
        if self.remote_lines and self.path:
            append_lines(self.path, self.remote_lines)


def _ends_its_last_line(path: Path) -> bool:
    """Whether a line appended to the file starts a line: it is empty or ends with a newline,
    or it is no regular file (``/dev/stderr``, a pipe) or cannot be read back."""
    if not os.path.isfile(path):
        return True
    try:
        with open(path, "rb") as f:
            if f.seek(0, os.SEEK_END) == 0:
                return True
            f.seek(-1, os.SEEK_END)
            return f.read(1) == b"\n"
    except OSError:
        return True


PASSED_OVER = "passed-over"  # a manifest status: a file in an input folder that bgcut does not read


def record_passed_over(files: list[tuple[str, str]], record: Callable[[Row], None], log: Callable[[str], None]) -> None:
    """A row for each file not read, and one warning per reason (the summary counts them)."""
    by_reason: dict[str, list[tuple[str, str]]] = {}
    for path, reason in files:
        record(Row(path, status=PASSED_OVER, error=reason))
        # Second names of one file differ in the name they point to: one warning for all of them.
        kind = SAME_FILE if reason.startswith(SAME_FILE) else reason
        by_reason.setdefault(kind, []).append((path, reason))
    for kind, found in by_reason.items():
        if not kind.startswith(codecs.NOT_READ):  # a README beside the photos needs no warning
            path, reason = found[0]
            log(f"bgcut: warning: {len(found)} file(s) passed over, e.g. {printable(path)}: {reason}")


NO_INPUTS = "bgcut: error: no input images:"  # how no_inputs_line starts (--watch leaves it out)


def no_inputs_line(inputs: list[str], passed_over: list[tuple[str, str]]) -> str:
    """The one error of a run whose inputs hold no image at all, with why files were passed over."""
    named = printable(", ".join(inputs) or "-")
    verb = "holds" if len(inputs) <= 1 else "hold"
    why = ""
    if passed_over:
        reasons = sorted({reason for _, reason in passed_over})
        why = f" ({len(passed_over)} file(s) passed over: {'; '.join(reasons)})"
    return f"{NO_INPUTS} {named} {verb} no image files{why}"


class Recorder:
    """Counts each row in the summary, says its error or warning, and adds it to the manifest
    unless a writer thread did so already (``in_manifest``)."""

    def __init__(self, summary: RunSummary, manifest: Manifest, log: Callable[[str], None]) -> None:
        self.summary, self.manifest, self.log = summary, manifest, log

    def __call__(self, row: Row, in_manifest: bool = False) -> None:
        summary = self.summary
        summary.rows.append(row)
        if row.status == "failed":
            summary.failed += 1
            self.log(f"bgcut: error: {printable(row.input)}: {printable(row.error or 'failed')}")
        elif row.status == "skipped":
            summary.skipped += 1
        elif row.status == PASSED_OVER:
            ext = PurePosixPath(row.input).suffix.lower() or "without extension"
            summary.passed_over[ext] = summary.passed_over.get(ext, 0) + 1
        elif row.status == "empty":
            summary.empty += 1
        else:
            summary.done += 1
        if row.review:
            summary.review += 1
        if row.warning:
            self.log(f"bgcut: warning: {printable(row.input)}: {printable(row.warning)}")
        if not in_manifest:
            self.manifest.add(row)
