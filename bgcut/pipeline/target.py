"""Where a run's outputs go, known before any work: a folder or URL, one named file, or stdout.

``OutputTarget`` also says how each input's output is named (so a rerun resumes by name), whether
it is finished, and what an existing output says of itself; ``load_background`` makes ``--bg``
ready. The writer (``pipeline/output.py``) writes into a target once the model is loaded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ..config import FILE_EXTENSIONS, OutputOptions, PostOptions, RunOptions, format_for_file, parse_blur, parse_colour
from ..errors import ImageError, UsageError
from ..images import open_image
from ..storage import Destination, is_url
from .postprocess import Background, coverage
from .reader import Source

STDOUT = "-"


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
