"""Writing a video: frames in, one finished file out, never a half-written one.

The output is written under a hidden temporary name in the output folder (``storage.temp_name``,
which a later run sweeps up if this process is killed) and renamed to its real name only after
the last frame and the container's index are in. Frames keep their input timestamps, so a
variable frame rate survives. The input's audio is copied packet by packet, interleaved by
time as frames go in, when the container holds its codec (``VideoFormat.audio``); otherwise
the caller is told why it was left out.

``FrameFolder`` is the same contract for a numbered image sequence: a hidden folder, renamed
when complete.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from ..config import VideoFormat
from ..errors import VideoError
from ..storage import atomic_write, temp_name
from ._av import require_av

# VP9: libvpx's default ("good" deadline, cpu-used 1) encoded 24 blackswan frames with alpha at
# 3.5 frames/s on 2 cores; "realtime" at cpu-used 6 at 48 frames/s, for a file 7% larger
# (bench/RESULTS.md). H.264's "medium" preset ran at 34 frames/s, ahead of the model.
_ENCODER_OPTIONS: dict[str, dict[str, str]] = {
    "libvpx-vp9": {"deadline": "realtime", "cpu-used": "6", "row-mt": "1", "b": "0"},
    "libx264": {"preset": "medium"},
    "prores_ks": {"profile": "4444", "vendor": "apl0"},
}
_FORMAT_FOR_ARRAY = {1: "gray", 3: "rgb24", 4: "rgba"}


class _Audio:
    """The input's first audio stream, read by a second demuxer, handed over up to a time."""

    def __init__(self, path: str, out: Any) -> None:
        av = require_av()
        self.container = av.open(path, metadata_errors="ignore")
        source = self.container.streams.audio[0]
        self.stream = out.add_stream_from_template(source)
        self.time_base = Fraction(source.time_base)
        self.packets: Iterator[Any] = self.container.demux(source)
        self.waiting: Any = None

    def until(self, seconds: float | None) -> Iterator[Any]:
        """Packets that start before ``seconds`` (all the rest when None), ready to mux."""
        while True:
            if self.waiting is None:
                try:
                    self.waiting = next(self.packets)
                except Exception:  # noqa: BLE001 - the end, or a damaged audio tail: it ends the copy, not the video
                    return
            packet = self.waiting
            if packet.dts is None or packet.size == 0:  # the demuxer's end-of-stream marker
                self.waiting = None
                continue
            if seconds is not None and packet.pts is not None and float(packet.pts * self.time_base) > seconds:
                return
            self.waiting = None
            packet.stream = self.stream
            yield packet

    def close(self) -> None:
        self.container.close()


class VideoSink:
    """One output video. ``write`` each frame's pixels with its input pts, then ``close``."""

    def __init__(
        self,
        final: Path,
        spec: VideoFormat,
        width: int,
        height: int,
        rate: Fraction | None,
        time_base: Fraction,
        quality: int,
        audio_from: str | None = None,
    ) -> None:
        av = require_av()
        assert spec.codec is not None and spec.pix_fmt is not None
        self.final, self.spec, self.time_base = final, spec, time_base
        final.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = final.parent / temp_name(final.name)
        # The container is named by the final extension: the temporary name's suffix says nothing.
        # bitexact: the WebM muxer would otherwise write a random segment id, so the same clip cut
        # twice would differ in 16 bytes; with it the same input gives the same file.
        self.out = av.open(
            str(self.tmp),
            "w",
            format=spec.container,
            container_options={"fflags": "+bitexact"},
        )
        try:
            self.stream = self.out.add_stream(spec.codec, rate=rate or Fraction(25))
            self.stream.width, self.stream.height = width, height
            pix_fmt = spec.pix_fmt
            if pix_fmt == "yuv420p" and (width % 2 or height % 2):
                pix_fmt = "yuv444p"  # 4:2:0 needs even sides; 4:4:4 takes any size
            self.stream.pix_fmt = pix_fmt
            self.stream.codec_context.time_base = time_base
            options = dict(_ENCODER_OPTIONS.get(spec.codec, {}))
            if spec.codec != "prores_ks":
                options["crf"] = str(quality)
            self.stream.codec_context.options = options
            if spec.extension == ".mov":
                self.stream.codec_context.codec_tag = "ap4h"  # ProRes 4444, as Apple's tools expect
            if spec.codec == "prores_ks":
                # FFmpeg's ProRes encoder is not deterministic in threads, frame or slice: the same
                # frames cut twice decoded to different pixels. One thread makes it so, for about
                # 50 ms a 854x480 frame against 33 (bench/RESULTS.md).
                self.stream.codec_context.thread_count = 1
            self.audio = _Audio(audio_from, self.out) if audio_from else None
        except BaseException:
            self.abort()
            raise
        self.frames = 0

    def write(self, pixels: np.ndarray, pts: int | None, index: int) -> None:
        av = require_av()
        channels = 1 if pixels.ndim == 2 else pixels.shape[2]
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format=_FORMAT_FOR_ARRAY[channels])
        frame.pts = pts if pts is not None else self.frames
        frame.time_base = self.time_base
        try:
            if self.audio is not None:
                for packet in self.audio.until(float(frame.pts * self.time_base)):
                    self.out.mux(packet)
            for packet in self.stream.encode(frame):
                self.out.mux(packet)
        except OSError:
            raise  # a full disk, as a photo's write says it: "cannot write output: ..." (video/run.py)
        except Exception as e:  # noqa: BLE001
            raise VideoError(f"cannot encode frame {self.frames}: {' '.join(str(e).split())}") from None
        self.frames += 1

    def close(self) -> None:
        """Flush the encoder, copy the rest of the audio, finish the file and give it its name."""
        try:
            for packet in self.stream.encode():
                self.out.mux(packet)
            if self.audio is not None:
                for packet in self.audio.until(None):
                    self.out.mux(packet)
                self.audio.close()
            self.out.close()
        except OSError:
            self.abort()
            raise
        except Exception as e:  # noqa: BLE001
            self.abort()
            raise VideoError(f"cannot finish the video: {' '.join(str(e).split())}") from None
        os.replace(self.tmp, self.final)

    def abort(self) -> None:
        """Leave nothing behind: the temporary file goes, the real name is never touched."""
        for closing in (getattr(getattr(self, "audio", None), "close", None), self.out.close):
            if closing is not None:
                with contextlib.suppress(Exception):  # already failing; the file is removed below
                    closing()
        self.tmp.unlink(missing_ok=True)


class FrameFolder:
    """A numbered image sequence (``000000.png``...) written into a hidden folder, renamed when done."""

    def __init__(self, final: Path, extension: str, encode: Any) -> None:
        self.final, self.extension, self.encode = final, extension, encode
        final.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = final.parent / temp_name(final.name)
        self.tmp.mkdir()
        self.frames = 0

    def write(self, pixels: np.ndarray, pts: int | None, index: int) -> None:
        atomic_write(self.tmp / f"{index:06d}{self.extension}", self.encode(pixels))
        self.frames += 1

    def close(self) -> None:
        if self.final.exists():  # --overwrite: the old sequence goes only once the new one is whole
            shutil.rmtree(self.final)
        os.replace(self.tmp, self.final)

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)
