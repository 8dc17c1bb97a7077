"""``paste_dataset``: compose COUNT pictures over worker processes, resumably, then write the annotations.

Layout of the output folder::

    images/000000.jpg ...   the pictures
    records/000000.json ... one per picture, written last: its objects (RLE masks, boxes, classes);
                            a picture with a record is finished, and a rerun skips it
    labels/000000.txt ...   YOLO segmentation labels (--yolo), with data.yaml
    annotations.json        COCO instance segmentation, assembled from the records in picture order
    paste.json              the settings; a rerun with other settings is refused

Picture ``i`` is drawn from its own random stream, seeded by (seed, i): a picture is the same
whichever worker makes it and whenever, and a rerun with a larger COUNT only adds pictures.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from .. import __version__
from ..config import check_value
from ..errors import BgcutError, UsageError
from ..pipeline.edges import estimate_foreground
from ..pipeline.writer import encode
from ..storage import TMP_SUFFIX, atomic_write
from ..workers import exit_when_gone, map_surviving_deaths, worker_context
from .annotations import coco_dataset, picture_record, yolo_lines, yolo_yaml
from .compose import compose, fit_background, pick
from .options import COUNT, DEFAULT_WORKERS, WORKERS, PasteOptions
from .sources import CUTOUT_HINT, Cutout, list_backgrounds, list_cutouts, load_background, load_cutout, with_alpha

SETTINGS = "paste.json"
OPTIONS_BEFORE_THEY_EXISTED = {"decontaminate": False}


@dataclass
class PasteSummary:
    done: int = 0
    skipped: int = 0
    failed: int = 0  # pictures that could not be made (their background could not be read)
    bad_inputs: list[str] = field(default_factory=list)  # one line per unreadable cut-out or background
    seconds: float = 0.0
    interrupted: bool = False
    annotations: Path | None = None

    @property
    def ok(self) -> bool:
        return not self.failed and not self.bad_inputs and not self.interrupted

    def line(self) -> str:
        rate = self.done / self.seconds if self.seconds > 0 else 0.0
        tail = " (interrupted)" if self.interrupted else ""
        return (
            f"bgcut paste: {self.done} made, {self.skipped} skipped, {self.failed} failed "
            f"in {self.seconds:.1f}s ({rate:.2f} images/s){tail}"
        )


@dataclass(frozen=True)
class _Plan:
    """What a worker needs; sent once per worker process."""

    out: Path
    cutouts: tuple[Cutout, ...]
    backgrounds: tuple[Path, ...]
    categories: tuple[str, ...]
    options: PasteOptions


_plan: _Plan | None = None


def picture_name(i: int) -> str:
    return f"{i:06d}"


def _init(plan: _Plan, main_pid: int | None = None) -> None:
    """Set up this process (``main_pid`` None) or a worker to make pictures of ``plan``."""
    global _plan
    _plan = plan
    if main_pid is not None:
        cv2.setNumThreads(1)  # one process per core already
        # Ctrl-C and SIGTERM reach the whole process group; only the parent decides what happens
        # next: it lets the pictures in hand finish and then ends the workers itself.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        exit_when_gone(main_pid)
    _cutout.cache_clear()
    _background.cache_clear()


@lru_cache(maxsize=256)
def _cutout(i: int) -> np.ndarray:
    assert _plan is not None
    rgba = load_cutout(_plan.cutouts[i].path)
    if _plan.options.decontaminate:
        rgba = np.dstack([estimate_foreground(np.ascontiguousarray(rgba[:, :, :3]), rgba[:, :, 3]), rgba[:, :, 3]])
    return rgba


@lru_cache(maxsize=16)
def _background(i: int) -> np.ndarray:
    assert _plan is not None
    return load_background(_plan.backgrounds[i])


def make_picture(i: int) -> tuple[int, list[str], str | None]:
    """Compose picture ``i`` and write its files; returns (i, bad-input lines, failure or None)."""
    plan = _plan
    assert plan is not None
    opt = plan.options
    rng = np.random.default_rng(np.random.SeedSequence([opt.seed, i]))
    b = pick(rng, 0, len(plan.backgrounds) - 1)
    try:
        background = _background(b)
    except BgcutError as e:
        return i, [str(e)], f"picture {picture_name(i)}: {e}"
    background = fit_background(background, opt.size, rng)
    comp = compose(background, len(plan.cutouts), _cutout, [c.category for c in plan.cutouts], opt, rng)
    name = picture_name(i)
    file_name = f"images/{name}.{opt.image_format}"
    record = picture_record(file_name, comp, [c.name for c in plan.cutouts])
    record["background"] = plan.backgrounds[b].name
    atomic_write(plan.out / file_name, encode(comp.image, "." + opt.image_format, jpeg_quality=opt.quality))
    if opt.yolo:
        h, w = comp.image.shape[:2]
        text = yolo_lines(record["objects"], plan.categories, w, h)
        atomic_write(plan.out / "labels" / f"{name}.txt", text.encode())
    # The record goes last: its presence is what marks the picture finished.
    atomic_write(plan.out / "records" / f"{name}.json", json.dumps(record, separators=(",", ":")).encode())
    return i, comp.errors, None


def _died(i: int) -> tuple[int, list[str], str | None]:
    return i, [], f"picture {picture_name(i)}: the worker process died twice while making it"


def _finished(out: Path, i: int, opt: PasteOptions) -> bool:
    name = picture_name(i)
    needed = [out / "records" / f"{name}.json", out / "images" / f"{name}.{opt.image_format}"]
    if opt.yolo:
        needed.append(out / "labels" / f"{name}.txt")
    return all(p.is_file() for p in needed)


def _digest(lines: list[str]) -> str:
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def _settings(plan: _Plan) -> dict:
    return {
        "options": plan.options.fingerprint(),
        "cutouts": _digest([f"{c.name}\t{c.category}" for c in plan.cutouts]),
        "backgrounds": _digest([p.name for p in plan.backgrounds]),
        "categories": list(plan.categories),
    }


def _check_settings(out: Path, settings: dict, overwrite: bool) -> None:
    path = out / SETTINGS
    if not path.is_file():
        return
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        old = None
    if overwrite:
        for sub in ("images", "records", "labels"):
            shutil.rmtree(out / sub, ignore_errors=True)
        (out / "annotations.json").unlink(missing_ok=True)
        return
    if isinstance(old, dict) and isinstance(old.get("options"), dict):
        # A folder made before an option existed was made with that option's "off" value.
        old["options"] = {**OPTIONS_BEFORE_THEY_EXISTED, **old["options"]}
    if old is None or {k: old.get(k) for k in settings} != settings:
        differs = sorted(k for k in settings if old is None or old.get(k) != settings[k])
        raise UsageError(
            f"{out}: holds pictures made with other settings ({', '.join(differs)} differ); "
            "use a new folder, or --overwrite to start again"
        )


def _write_dataset_files(plan: _Plan, count: int) -> Path:
    records = []
    for i in range(count):
        path = plan.out / "records" / f"{picture_name(i)}.json"
        if path.is_file():
            records.append(json.loads(path.read_text(encoding="utf-8")))
    coco = coco_dataset(records, plan.categories)
    target = plan.out / "annotations.json"
    atomic_write(target, json.dumps(coco, separators=(",", ":")).encode())
    if plan.options.yolo:
        atomic_write(plan.out / "data.yaml", yolo_yaml(str(plan.out.resolve()), plan.categories).encode())
    return target


def paste_dataset(
    cutouts: list[str],
    backgrounds: str,
    out: str | Path,
    count: int,
    options: PasteOptions | None = None,
    workers: int = DEFAULT_WORKERS,
    overwrite: bool = False,
    progress: bool = False,
    on_error: Callable[[str], None] | None = None,
    on_warning: Callable[[str], None] | None = None,
) -> PasteSummary:
    """Compose ``count`` pictures from RGBA ``cutouts`` (files or folders) over photos in ``backgrounds``.

    Returns a summary; unreadable inputs are reported through ``on_error`` (one line each) and
    in ``summary.bad_inputs``, and never stop the run. A worker process that died, and whose
    pictures were made again, is said through ``on_warning``.
    """
    check_value("--count", count, COUNT)
    check_value("--workers", workers, WORKERS)
    opt = options or PasteOptions()
    report = on_error or (lambda _msg: None)
    warn = on_warning or (lambda _msg: None)
    start = time.perf_counter()
    summary = PasteSummary()
    listed, errors = list_cutouts(cutouts, opt.classes)
    found, no_alpha = with_alpha(listed)
    if listed and not found:
        raise UsageError(
            f"none of the {len(listed)} image(s) in {' '.join(cutouts)} has an alpha channel to cut by: {CUTOUT_HINT}"
        )
    bgs, bg_errors = list_backgrounds(backgrounds)
    for line in errors + no_alpha + bg_errors:
        summary.bad_inputs.append(line)
        report(line)
    if not found:
        raise UsageError(f"no cut-outs found in {' '.join(cutouts)} (PNG/WebP/TIFF files with transparency)")
    if not bgs:
        raise UsageError(f"no background images found in {backgrounds}")
    out = Path(out)
    plan = _Plan(out, tuple(found), tuple(bgs), tuple(sorted({c.category for c in found})), opt)
    settings = _settings(plan)
    _check_settings(out, settings, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    for sub in ("images", "records", "labels"):
        for stale in (out / sub).glob(f".*{TMP_SUFFIX}"):  # left by a killed run (SIGKILL, power loss)
            stale.unlink(missing_ok=True)
    atomic_write(out / SETTINGS, (json.dumps({"bgcut": __version__, **settings}, indent=1) + "\n").encode())

    pending = [i for i in range(count) if not _finished(out, i, opt)]
    summary.skipped = count - len(pending)
    seen: set[str] = set(summary.bad_inputs)
    bar = tqdm(total=len(pending), disable=not progress, unit="img", file=sys.stderr, dynamic_ncols=True)

    def collect(result: tuple[int, list[str], str | None]) -> None:
        _, bad, failure = result
        for line in bad:
            if line not in seen:
                seen.add(line)
                summary.bad_inputs.append(line)
                report(line)
        if failure is None:
            summary.done += 1
        else:
            summary.failed += 1
        bar.update(1)

    try:
        if workers == 0 or len(pending) <= 1:
            _init(plan)
            for i in pending:
                collect(make_picture(i))
        else:
            ctx = worker_context(preload=("bgcut.paste.compose",))  # never re-runs the caller's script
            for result in map_surviving_deaths(
                ctx, make_picture, pending, workers, _init, (plan, os.getpid()), _died, warn, "picture(s)"
            ):
                collect(result)
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        bar.close()
    if not summary.interrupted:
        summary.annotations = _write_dataset_files(plan, count)
    summary.seconds = time.perf_counter() - start
    return summary
