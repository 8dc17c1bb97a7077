"""The writer: one decoded input and its mask -> the written file(s) and its manifest row.

``Writer`` is built once the model is loaded, with its facts (``model_step.ModelFacts``), and
writes into an ``OutputTarget`` (``pipeline/target.py``, where outputs go), rendering, encoding
and writing atomically. Both engines use it: the local engine in its writer threads, Ray in its
write tasks. A writer never raises for one input's failure: the row (``Row``) says what happened.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import BinaryIO

import numpy as np

from ..storage import atomic_write
from .dataset import DecodeItem
from .doubt import measure as measure_doubt
from .model_step import ModelFacts
from .postprocess import render
from .reader import Source
from .target import STDOUT, OutputTarget
from .writer import encode


@dataclass
class Row:
    """One manifest line: what happened to one input."""

    input: str
    outputs: list[str] = field(default_factory=list)
    status: str = "done"  # done | skipped | empty | failed
    error: str | None = None
    width: int | None = None
    height: int | None = None
    bbox: list[int] | None = None
    fg_fraction: float | None = None
    model: str | None = None
    weights_sha256: str | None = None
    warning: str | None = None
    frames: int | None = None  # a video's frames written; left out of image rows' manifest lines
    # How much to doubt the cut-out, 0 to 1, and what it is made of (pipeline/doubt.py); with
    # --max-doubt, ``review`` marks the rows above it. Left out of the lines of rows without.
    doubt: float | None = None
    doubt_parts: dict[str, float] | None = None
    review: bool | None = None


@dataclass
class Job:
    """Everything a writer thread needs for one input."""

    source: Source
    item: DecodeItem
    mask: np.ndarray  # uint8 H x W


class Writer:
    """Renders, encodes and writes one input's output(s) into ``target`` (a writer thread's job)."""

    def __init__(self, target: OutputTarget, model: ModelFacts, stdout: BinaryIO | None = None) -> None:
        self.target, self.model, self.stdout = target, model, stdout

    def write(self, job: Job) -> Row:
        """Post-process, encode and write one input (runs in a writer thread)."""
        target, out = self.target, self.target.out
        item, source = job.item, job.source
        rgb = item.rgb
        h, w = rgb.shape[:2]
        model = self.model
        row = Row(source.display, width=w, height=h, warning=item.warning)
        row.model, row.weights_sha256 = model.name, model.sha256
        try:
            alpha = item.alpha
            result = render(rgb, alpha, job.mask, target.post, out, target.bg, model.size)
            if result.warning:
                row.warning = f"{row.warning}; {result.warning}" if row.warning else result.warning
            row.bbox = list(result.bbox) if result.bbox else None
            row.fg_fraction = round(result.fg_fraction, 6)
            # Of the model's own mask, as upsampled: --binary or --feather would hide its hesitation.
            # Here, for the manifest's rows only: the server and the video frames have no use for it.
            doubt = measure_doubt(job.mask)
            row.doubt, row.doubt_parts = doubt.doubt, doubt.parts()
            if target.run.max_doubt is not None:
                row.review = doubt.doubt > target.run.max_doubt
            if not result.images:
                row.status = "empty"
                return row
            for suffix, image in result.images:
                data = encode(image, out.extension, out.png)
                if target.to_stdout:
                    assert self.stdout is not None
                    self.stdout.write(data)
                    self.stdout.flush()
                    row.outputs.append(STDOUT)
                elif target.to_file is not None:
                    atomic_write(target.to_file, data)
                    row.outputs.append(str(target.to_file))
                else:
                    assert target.dest is not None
                    target.dest.write(target.output_name(source, suffix), data)
                    row.outputs.append(target.output_path(source, suffix))
            if out.per_object:
                self._remove_stale_objects(source, len(result.images))
        except OSError as e:
            row.status, row.error = "failed", f"cannot write output: {e.strerror or e}"
        except Exception as e:  # noqa: BLE001 - one input's failure must not stop the batch
            row.status, row.error = "failed", f"{type(e).__name__}: {e}"
        return row

    def _remove_stale_objects(self, source: Source, n: int) -> None:
        # An --overwrite rerun that finds fewer objects must not leave the old extra crops behind.
        target = self.target
        assert target.dest is not None
        while target.dest.remove_if_exists(target.output_name(source, f"_obj{n:02d}")):
            n += 1
