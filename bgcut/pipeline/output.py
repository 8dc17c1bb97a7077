"""The output stage, in two pieces: where outputs go, and the writer that makes them.

``OutputTarget`` is known before any work: a folder or URL, one named file, or stdout; how each
input's output is named (so a rerun resumes by name), and what an existing output says of
itself. ``Writer`` is built once the model is loaded, with its facts (``ModelFacts``): it turns
one decoded input and its mask into the written file(s) and a manifest row, rendering,
encoding and writing atomically. Both engines use them: the local engine in its writer threads,
Ray in its write tasks. A writer never raises for one input's failure: the row says what
happened.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image

from ..config import FILE_EXTENSIONS, OutputOptions, PostOptions, RunOptions, format_for_file, parse_blur, parse_colour
from ..errors import ImageError, UsageError
from ..images import open_image
from ..storage import Destination, atomic_write, is_url
from .dataset import DecodeItem
from .doubt import measure as measure_doubt
from .postprocess import Background, coverage, render
from .reader import Source
from .writer import encode

STDOUT = "-"


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


def is_file_target(output: str) -> bool:
    """Whether ``-o`` names one output file (``cut.png``) rather than a folder: a local name with an
    image extension that is not an existing folder."""
    return not is_url(output) and format_for_file(output) is not None and not Path(output).is_dir()


def load_background(spec: str) -> Background:
    """``--bg`` made ready: a colour, or the photo it names decoded (a path or a URL, EXIF
    orientation applied), or the input's own background blurred (``blur[:SIGMA]``).
    ``OutputOptions`` has checked that it is one of them."""
    if (sigma := parse_blur(spec)) is not None:
        return Background(blur=sigma)
    colour = parse_colour(spec)
    if colour is not None:
        return Background(color=colour)
    try:
        return Background(image=open_image(spec).rgb)
    except ImageError as e:
        raise UsageError(f"--bg {spec}: cannot read image ({e})") from None


@dataclass(frozen=True)
class ModelFacts:
    """What a written output records of the model that made its mask (the manifest row), and the
    model's input size, which scales the edge refinement."""

    name: str
    sha256: str
    size: int


class OutputTarget:
    """Where a run's outputs go and how they are named; checked before any work."""

    def __init__(self, run: RunOptions, out: OutputOptions, post: PostOptions, output: str) -> None:
        self.run, self.out, self.post = run, out, post
        self.to_stdout = output == STDOUT
        # `-o cut.png`: one named file (a local path), not a folder.
        self.to_file = Path(output) if not self.to_stdout and is_file_target(output) else None
        single = self.to_stdout or self.to_file is not None
        self.dest = None if single else Destination(output)  # a folder or a URL
        self.bg: Background | None = load_background(out.bg) if out.bg else None
        if single and out.per_object:
            raise UsageError(f"--per-object writes several files; it cannot write to {output} (give a folder)")
        # The file's extension must be the one the format writes (cut.png takes mask and crop too).
        if self.to_file is not None and FILE_EXTENSIONS[self.to_file.suffix.lower()] != FILE_EXTENSIONS[out.extension]:
            raise UsageError(
                f"-o {output}: --format {out.format} writes {out.extension} files; "
                f"name the output {self.to_file.with_suffix(out.extension).name}, or leave --format out"
            )

    def output_name(self, source: Source, suffix: str = "") -> str:
        """The output's "/"-separated name inside the output folder."""
        return f"{source.key}{suffix}{self.out.extension}"

    def output_path(self, source: Source, suffix: str = "") -> str:
        """The output as rows and messages show it: a path, or the full URL."""
        assert self.dest is not None
        return self.dest.locate(self.output_name(source, suffix))

    @property
    def _first_suffix(self) -> str:
        """The suffix of an input's first output: ``_obj00`` for per-object crops."""
        return "_obj00" if self.out.per_object else ""

    def output_file(self, source: Source) -> str | None:
        """Where this source's (first) output goes, for the "never write over an input" check."""
        if self.to_file is not None:
            return str(self.to_file)
        return None if self.dest is None else self.output_path(source, self._first_suffix)

    def finished(self, source: Source) -> bool:
        if self.dest is None or self.run.overwrite:
            return False
        try:
            return self.dest.exists(self.output_name(source, self._first_suffix))
        except OSError:  # an output folder we cannot look into: the write will say why, for this file
            return False

    def read_back(self, source: Source) -> dict | None:
        """The manifest facts of an existing output, read from the file: its size, box and
        foreground share. None for outputs that cannot tell them: crops, pictures flattened onto
        --bg, a remote folder."""
        spec = self.out.spec
        if spec.crop or spec.pixels == "flat" or self.out.bg or self.dest is None or self.dest.remote:
            return None
        try:
            with Image.open(self.output_path(source, self._first_suffix)) as im:
                if spec.pixels == "alpha":
                    alpha = np.asarray(im.convert("L"))
                elif "A" in im.getbands():
                    alpha = np.asarray(im.getchannel("A"))
                else:
                    return None
        except (OSError, ValueError):
            return None
        box, fraction = coverage(alpha, self.post.threshold)
        return {
            "width": int(alpha.shape[1]),
            "height": int(alpha.shape[0]),
            "bbox": list(box) if box else None,
            "fg_fraction": round(fraction, 6),
        }


class Writer:
    """Renders, encodes and writes one input's output(s) into ``target`` (a writer thread's job)."""

    def __init__(self, target: OutputTarget, model: ModelFacts, stdout: BinaryIO | None = None) -> None:
        self.target, self.model, self.stdout = target, model, stdout

    def write(self, job: Job) -> Row:
        """Post-process, encode and write one input (runs in a writer thread)."""
        target, out = self.target, self.target.out
        item, source = job.item, job.source
        rgb = item.rgb.numpy()
        h, w = rgb.shape[:2]
        model = self.model
        row = Row(source.display, width=w, height=h, warning=item.warning)
        row.model, row.weights_sha256 = model.name, model.sha256
        try:
            alpha = None if item.alpha is None else item.alpha.numpy()
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
