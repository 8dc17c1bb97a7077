"""Shared pieces of the commands: the root group, option aliases, error-to-exit-code mapping."""

from __future__ import annotations

import io
import os
import signal
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Annotated

import click
import typer
from typer.core import TyperGroup

from ..config import DEFAULT_MODEL, FAST_MODEL, PRECISIONS, REFINE, Bounds, PostOptions, RunOptions, bounds_of
from ..errors import BgcutError, UsageError


class DefaultToRemove(TyperGroup):
    """``bgcut INPUT...`` means ``bgcut remove INPUT...`` unless the first word is a command.

    So ``bgcut photos -o out`` works, and a folder that shares a command's name is
    reached by writing it as a path: ``bgcut ./train -o out``.
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h", "--version"):
            args = ["remove", *args]
        return super().parse_args(ctx, args)


def ranged(help: str, options: type, name: str) -> str:
    """``help`` with the range that the options class declares for its field ``name``
    (``config.Bounds``), written as Typer writes one: ``[0<=x<=1]``. The options object checks it;
    Typer is not given the bounds, so they cannot come to disagree."""
    return ranged_by(help, bounds_of(options, name))


def ranged_by(help: str, bounds: Bounds) -> str:
    """``help`` with ``bounds`` shown, for an API argument's range (``paste_dataset``'s count)."""
    return f"{help}  [{bounds.shown()}]"


def fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"bgcut: error: {message}", err=True)
    return typer.Exit(code)


@contextmanager
def reported_errors() -> Iterator[None]:
    """Turn bgcut's errors into one stderr line and an exit status (2 usage, 1 otherwise)."""
    try:
        yield
    except UsageError as e:
        raise fail(str(e), 2) from None
    except BgcutError as e:
        raise fail(str(e), 1) from None


@contextmanager
def terminated_as_interrupt() -> Iterator[list[int]]:
    """SIGTERM ends a run the way Ctrl-C does: the writes in progress finish, the summary is
    printed, the workers are shut down. Yields a list that holds the signal number once one came."""
    signalled: list[int] = []

    def on_term(signum: int, _frame: object) -> None:
        if not signalled:
            signalled.append(signum)
            raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, on_term)
    except ValueError:  # not the main thread (an embedding application): leave its handlers alone
        yield signalled
        return
    try:
        yield signalled
    finally:
        signal.signal(signal.SIGTERM, previous)


def interrupt_status(signalled: list[int]) -> int:
    """128 + the signal's number, as shells report it: 143 for SIGTERM, 130 for Ctrl-C."""
    return 128 + (signalled[0] if signalled else signal.SIGINT)


@dataclass
class Stdin:
    """What ``-`` stands for: paths (``lines``), or one image saved to a temporary file (``image``)."""

    lines: list[str] | None = None
    image: str | None = None


@contextmanager
def read_stdin(wanted: bool, null: bool) -> Iterator[Stdin]:
    """Read stdin once and tell which it holds: image bytes (``cat photo.jpg | bgcut - -o -``) or a
    list of paths (``find ... | bgcut -``, ``find ... -print0 | bgcut -0 -``)."""
    if not wanted:
        yield Stdin()
        return
    data = sys.stdin.buffer.read()
    if not data:
        raise UsageError("stdin is empty: `-` reads the bytes of one image, or a list of paths, from it")
    if _is_image(data):
        with tempfile.TemporaryDirectory(prefix="bgcut-stdin-") as folder:
            path = Path(folder, "stdin")
            path.write_bytes(data)
            yield Stdin(image=str(path))
        return
    if b"\0" in data and not null:
        raise UsageError(
            "stdin holds neither an image bgcut can read nor a list of paths (it has NUL bytes: "
            "for `find -print0` lists add -0)"
        )
    if (kind := _binary_kind(data, null)) is not None:
        raise UsageError(f"stdin holds neither an image bgcut can read nor a list of paths ({kind})")
    text = os.fsdecode(data)  # paths are bytes on POSIX: undecodable ones survive as surrogates
    yield Stdin(lines=text.split("\0") if null else text.splitlines())


# The first bytes of image files: stdin that starts so, and that no decoder could read, is a
# damaged image, never a list of paths.
_SIGNATURES = {
    b"\xff\xd8\xff": "JPEG",
    b"\x89PNG": "PNG",
    b"GIF8": "GIF",
    b"II*\x00": "TIFF",
    b"MM\x00*": "TIFF",
    b"\x00\x00\x00\x0cjP": "JPEG 2000",
}
_TEXT_CONTROLS = frozenset(b"\t\n\r")


def _binary_kind(data: bytes, null: bool) -> str | None:
    """Why ``data`` is not a list of paths, or None when it can be one."""
    for signature, kind in _SIGNATURES.items():
        if data.startswith(signature):
            return f"it starts like a {kind} file, but the image in it cannot be read"
    if data[8:12] == b"WEBP" and data.startswith(b"RIFF"):
        return "it starts like a WebP file, but the image in it cannot be read"
    allowed = _TEXT_CONTROLS | {0} if null else _TEXT_CONTROLS
    if any((b < 0x20 or b == 0x7F) and b not in allowed for b in data[:65536]):
        return "it has control bytes that no list of paths holds"
    return None


def _is_image(data: bytes) -> bool:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)):
            return True
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return False


def echo_err(msg: str) -> None:
    typer.echo(msg, err=True)


ModelOpt = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        help=f"Model name from `bgcut models list` (default: {DEFAULT_MODEL}, embedded; {FAST_MODEL}, also embedded, is about 15x faster on a CPU and coarser).",
    ),
]
WeightsOpt = Annotated[
    str | None,
    typer.Option(
        "--weights",
        "-w",
        help="Local weights: a .safetensors/.pth file or a folder from `bgcut train` (config.json beside it sets the architecture).",
    ),
]
DeviceOpt = Annotated[str, typer.Option("--device", "-d", help="auto, cpu, cuda, cuda:N or mps.")]
WorkersOpt = Annotated[
    int,
    typer.Option(
        "--workers", "-j", help=ranged("Decode processes (0 = decode in the main process).", RunOptions, "workers")
    ),
]
SizeOpt = Annotated[
    int | None,
    typer.Option("--size", help=ranged("Inference resolution in pixels (default: the model's).", RunOptions, "size")),
]
QuietOpt = Annotated[
    bool, typer.Option("--quiet", "-q", help="No progress bar and no summary line; errors are still printed.")
]
Refine = Enum("Refine", {name: name for name in REFINE}, type=str)  # type: ignore[misc]
Precision = Enum("Precision", {name: name for name in PRECISIONS}, type=str)  # type: ignore[misc]
PrecisionOpt = Annotated[
    Precision, typer.Option("--precision", help="auto (fp16 on GPU, fp32 on CPU), fp32, fp16 or bf16.")
]
RefineOpt = Annotated[
    Refine,
    typer.Option(
        "--refine",
        help="The mask's edge at full resolution: none (the model's mask, upsampled), guided (moved onto the photo's own edges by a guided filter), matting (closed-form alpha matting around the edge: slow, pip install 'bgcut[matting]').",
    ),
]
RefineEpsOpt = Annotated[
    float,
    typer.Option(
        "--refine-eps",
        help=ranged("--refine guided: smaller follows the photo's edges more closely.", PostOptions, "refine_eps"),
    ),
]
