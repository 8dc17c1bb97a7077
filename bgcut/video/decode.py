"""Reading a video: its facts, then its frames upright and in order, with their times.

A phone video is stored sideways with a rotation in its metadata; frames are turned upright
here (the model needs them so) and written upright, so players show the output as they show
the input. 10-bit and other pixel formats become 8-bit RGB through FFmpeg's scaler.
Whatever FFmpeg cannot read becomes a ``VideoError`` with its reason, never a crash.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..errors import VideoError
from ._av import require_av


@dataclass(frozen=True)
class VideoInfo:
    width: int  # upright, as shown
    height: int
    rate: Fraction | None  # the stream's average frame rate; None when the container does not say
    time_base: Fraction  # the unit of each frame's pts
    frames: int  # as the container declares it; 0 when it does not
    codec: str
    rotation: int  # degrees counter-clockwise that frames are turned to stand upright
    audio_codec: str | None  # the first audio stream's codec, None without audio


@dataclass(frozen=True)
class Frame:
    index: int
    rgb: np.ndarray  # H x W x 3 uint8, upright
    pts: int | None  # in ``VideoInfo.time_base``


def _reason(e: BaseException) -> str:
    text = getattr(e, "strerror", None) or str(e) or type(e).__name__
    return " ".join(str(text).split())


def _upright(rgb: np.ndarray, rotation: int) -> np.ndarray:
    k = (rotation // 90) % 4
    return np.ascontiguousarray(np.rot90(rgb, k)) if k else rgb


class VideoReader:
    """One open input video. ``info`` is read on opening; ``frames()`` decodes once, in order."""

    def __init__(self, path: str | Path) -> None:
        av = require_av()
        self.path = str(path)
        try:
            self.container = av.open(self.path, metadata_errors="ignore")
        except Exception as e:  # noqa: BLE001 - FFmpeg's errors are many types; each becomes one line
            raise VideoError(f"cannot open video: {_reason(e)}") from None
        try:
            self.info = self._probe()
        except BaseException:
            self.container.close()
            raise

    def _probe(self) -> VideoInfo:
        if not self.container.streams.video:
            raise VideoError("holds no video stream")
        stream = self.container.streams.video[0]
        ctx = stream.codec_context
        if ctx is None or not ctx.name or stream.codec_context.codec is None:
            raise VideoError("its video codec is unknown to FFmpeg")
        if not ctx.width or not ctx.height:
            raise VideoError(f"its {ctx.name} stream has no frame size")
        rotation = self._rotation()  # may open the file again: the stream is looked up after it
        stream = self.container.streams.video[0]
        ctx = stream.codec_context
        w, h = (ctx.height, ctx.width) if rotation % 180 else (ctx.width, ctx.height)
        audio = self.container.streams.audio
        return VideoInfo(
            width=w,
            height=h,
            rate=Fraction(stream.average_rate) if stream.average_rate else None,
            time_base=Fraction(stream.time_base) if stream.time_base else Fraction(1, 1000),
            frames=int(stream.frames or 0),
            codec=ctx.name,
            rotation=rotation,
            audio_codec=audio[0].codec_context.name if audio and audio[0].codec_context is not None else None,
        )

    def _threaded(self) -> None:
        # Frame and slice threads: decoding is a large share of the time. Set before the first
        # decode opens the codec, which fixes it.
        self.container.streams.video[0].thread_type = "AUTO"

    def _rotation(self) -> int:
        # The display matrix is on the stream; FFmpeg copies it onto each decoded frame, where
        # PyAV reads it. Peek at the first frame, then start again from the top.
        self._threaded()
        try:
            first = next(self.container.decode(video=0), None)
        except Exception as e:  # noqa: BLE001
            raise VideoError(f"cannot decode its first frame: {_reason(e)}") from None
        if first is None:
            raise VideoError("holds no video frames")
        rotation = int(round(first.rotation or 0)) % 360
        try:
            self.container.seek(0)
        except Exception:  # noqa: BLE001 - not seekable (a pipe): open it again instead
            self.container.close()
            self.container = require_av().open(self.path, metadata_errors="ignore")
            self._threaded()
        return rotation

    def frames(self) -> Iterator[Frame]:
        """Every frame, upright RGB, in presentation order. Raises VideoError when decoding breaks."""
        n = 0
        try:
            for frame in self.container.decode(video=0):
                yield Frame(n, _upright(frame.to_ndarray(format="rgb24"), self.info.rotation), frame.pts)
                n += 1
        except VideoError:
            raise
        except Exception as e:  # noqa: BLE001
            raise VideoError(f"cannot decode frame {n}: {_reason(e)}") from None
        if n == 0:
            raise VideoError("holds no video frames")

    def close(self) -> None:
        self.container.close()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
