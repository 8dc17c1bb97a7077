"""The output stage: one decoded input and its mask -> the written file(s) and a manifest row.

Both engines use it: the local engine in its writer threads, Ray in its write tasks. It knows
where outputs go (a folder or URL, one named file, or stdout), how they are named (resume),
and renders, encodes and writes them atomically. It never raises for one input's failure:
the row says what happened.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image

from ..config import FILE_EXTENSIONS, OutputOptions, PostOptions, RunOptions, format_for_file, parse_colour
from ..errors import ImageError, UsageError
from ..images import open_image
from ..storage import Destination, atomic_write, is_url
from .dataset import DecodeItem
from .matting import require_pymatting
from .postprocess import Background, bounding_box, hard, render
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
    orientation applied). ``OutputOptions`` has checked that it is one or the other."""
    colour = parse_colour(spec)
    if colour is not None:
        return Background(color=colour)
    try:
        return Background(image=open_image(spec).rgb)
    except ImageError as e:
        raise UsageError(f"--bg {spec}: cannot read image ({e})") from None


class OutputStage:
    def __init__(
        self,
        run: RunOptions,
        out: OutputOptions,
        post: PostOptions,
        output: str,
        log: Callable[[str], None],
        stdout: BinaryIO | None,
    ) -> None:
        self.run, self.out, self.post, self.log = run, out, post, log
        self.to_stdout = output == STDOUT
        # `-o cut.png`: one named file (a local path), not a folder.
        self.to_file = Path(output) if not self.to_stdout and is_file_target(output) else None
        single = self.to_stdout or self.to_file is not None
        self.dest = None if single else Destination(output)  # a folder or a URL
        self.stdout = stdout
        if post.refine == "matting" and (note := require_pymatting()) is not None:
            log(f"bgcut: note: {note}")
        self.bg: Background | None = load_background(out.bg) if out.bg else None
        if single and out.per_object:
            raise UsageError(f"--per-object writes several files; it cannot write to {output} (give a folder)")
        # The file's extension must be the one the format writes (cut.png takes mask and crop too).
        if self.to_file is not None and FILE_EXTENSIONS[self.to_file.suffix.lower()] != FILE_EXTENSIONS[out.extension]:
            raise UsageError(
                f"-o {output}: --format {out.format} writes {out.extension} files; "
                f"name the output {self.to_file.with_suffix(out.extension).name}, or leave --format out"
            )
        # Set by the engine once the model is loaded: the manifest's facts, and the mask's scale.
        self.model_name: str | None = None
        self.sha: str | None = None
        self.model_size: int | None = None

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
        box = bounding_box(alpha, self.post.threshold)
        return {
            "width": int(alpha.shape[1]),
            "height": int(alpha.shape[0]),
            "bbox": list(box) if box else None,
            "fg_fraction": round(float(hard(alpha, self.post.threshold).mean()), 6),
        }

    def write(self, job: Job) -> Row:
        """Post-process, encode and write one input (runs in a writer thread)."""
        item, source = job.item, job.source
        rgb = item.rgb.numpy()
        h, w = rgb.shape[:2]
        row = Row(
            source.display, width=w, height=h, model=self.model_name, weights_sha256=self.sha, warning=item.warning
        )
        try:
            alpha = None if item.alpha is None else item.alpha.numpy()
            result = render(rgb, alpha, job.mask, self.post, self.out, self.bg, self.model_size)
            if result.warning:
                row.warning = f"{row.warning}; {result.warning}" if row.warning else result.warning
            row.bbox = list(result.bbox) if result.bbox else None
            row.fg_fraction = round(result.fg_fraction, 6)
            if not result.images:
                row.status = "empty"
                return row
            for suffix, image in result.images:
                data = encode(image, self.out.extension, self.out.png)
                if self.to_stdout:
                    assert self.stdout is not None
                    self.stdout.write(data)
                    self.stdout.flush()
                    row.outputs.append(STDOUT)
                elif self.to_file is not None:
                    atomic_write(self.to_file, data)
                    row.outputs.append(str(self.to_file))
                else:
                    assert self.dest is not None
                    self.dest.write(self.output_name(source, suffix), data)
                    row.outputs.append(self.output_path(source, suffix))
            if self.out.per_object:
                self._remove_stale_objects(source, len(result.images))
        except OSError as e:
            row.status, row.error = "failed", f"cannot write output: {e.strerror or e}"
        except Exception as e:  # noqa: BLE001 - one input's failure must not stop the batch
            row.status, row.error = "failed", f"{type(e).__name__}: {e}"
        return row

    def _remove_stale_objects(self, source: Source, n: int) -> None:
        # An --overwrite rerun that finds fewer objects must not leave the old extra crops behind.
        assert self.dest is not None
        while self.dest.remove_if_exists(self.output_name(source, f"_obj{n:02d}")):
            n += 1
