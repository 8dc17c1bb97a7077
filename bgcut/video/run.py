"""The video engine: each input video -> one output video (or image sequence), the stages in
three threads (``process_videos`` takes the run's clips in turn, as ``pipeline.local_engine``
takes its photos; ``cut_video`` does one).

decode (a thread: FFmpeg releases the GIL) -> masks in batches on the one model (the calling
thread) -> steady -> render + encode (a thread). Both queues are bounded, so a long video
never sits in memory: at most a few batches of frames are in flight. A failure anywhere
stops this video, removes its temporary output and becomes the row's error; the run goes on.
"""

from __future__ import annotations

import dataclasses
import queue
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..config import OutputOptions, PostOptions, VideoFormat, VideoOptions
from ..errors import DeviceMemoryError, ImageError, VideoError
from ..images import model_input
from ..pipeline.model_step import ModelStep
from ..pipeline.output import Row
from ..pipeline.postprocess import Background, render
from ..pipeline.reader import Source
from ..pipeline.target import OutputTarget
from ..pipeline.writer import encode
from .decode import Frame, VideoInfo, VideoReader
from .encode import FrameFolder, VideoSink
from .stability import Steady

_END = object()


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def _reason(e: Exception) -> str:
    """A row's one-line error, worded as the image engine words its own."""
    if isinstance(e, ImageError):
        return str(e)
    if isinstance(e, OSError):
        return f"cannot write output: {e.strerror or e}"
    return f"{type(e).__name__}: {e}"


def audio_plan(info: VideoInfo, spec: VideoFormat) -> tuple[bool, str | None]:
    """Whether the input's audio is copied, and else why not (a warning), or (False, None) without audio."""
    if info.audio_codec is None or spec.pixels == "image":
        return False, None
    if not spec.audio:
        return False, None  # a mask video carries no sound, by design
    if info.audio_codec in spec.audio:
        return True, None
    return False, f"audio ({info.audio_codec}) not copied: {spec.extension} holds {', '.join(spec.audio)}"


def _produce(frames: Iterator[Frame], out: queue.Queue, stop: threading.Event) -> None:
    try:
        for frame in frames:
            while not stop.is_set():
                try:
                    out.put(frame, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if stop.is_set():
                return
        out.put(_END)
    except BaseException as e:  # noqa: BLE001 - handed to the model thread, which reports it
        out.put(_Failed(e))


def _consume(sink: VideoSink | FrameFolder, jobs: queue.Queue, done: list[BaseException | None]) -> None:
    while (job := jobs.get()) is not _END:
        if done[0] is not None:
            continue  # failed already: drain, so the model thread never blocks on a full queue
        try:
            if (made := job()) is not None:
                sink.write(*made)
        except BaseException as e:  # noqa: BLE001
            done[0] = e


def process_videos(
    target: OutputTarget,
    model: ModelStep,
    videos: list[Source],
    video: VideoOptions,
    record: Callable[[Row], None],
    progress: bool | None,
) -> None:
    """Each video of the run in turn, through the same model, each recorded as its row."""
    assert target.dest is not None
    show = progress if progress is not None else sys.stderr.isatty()
    # The run holds the model's share of the cores and the freed memory around this (bgcut/run.py).
    for source in videos:
        final = Path(target.dest.locate(video.spec.output_name(source.key)))
        with tqdm(disable=not show, unit="frame", file=sys.stderr, dynamic_ncols=True, desc=source.key) as bar:
            record(
                cut_video(
                    source.path,
                    source.display,
                    final,
                    model,
                    target.post,
                    target.out,
                    video,
                    target.bg,
                    bar.update,
                )
            )


def cut_video(
    path: str,
    display: str,
    final: Path,
    model: ModelStep,
    post: PostOptions,
    out: OutputOptions,
    video: VideoOptions,
    bg: Background | None,
    on_frames: Callable[[int], None] = lambda n: None,
) -> Row:
    """Cut out every frame of the video at ``path`` into ``final``. Never raises for a bad video:
    the row says what happened. ``on_frames`` is told how many frames each batch finished."""
    row = Row(display, model=model.facts.name, weights_sha256=model.facts.sha256)
    spec = video.spec
    try:
        reader = VideoReader(path)
    except VideoError as e:
        row.status, row.error = "failed", str(e)
        return row
    with reader:
        info = reader.info
        row.width, row.height = info.width, info.height
        copy_audio, warning = audio_plan(info, spec)
        row.warning = warning
        try:
            if spec.pixels == "image":
                sink: VideoSink | FrameFolder = FrameFolder(
                    final, out.extension, lambda px: encode(px, out.extension, out.png)
                )
                frame_out = out
            else:
                sink = VideoSink(
                    final,
                    spec,
                    info.width,
                    info.height,
                    info.rate,
                    info.time_base,
                    video.quality,
                    path if copy_audio else None,
                )
                frame_out = dataclasses.replace(out, format=spec.frames_as, margin="0", per_object=False)
        except Exception as e:  # noqa: BLE001 - an output that cannot be opened fails this video alone
            row.status, row.error = "failed", _reason(e)
            return row
        try:
            row.frames = _pipeline(reader, sink, model, post, frame_out, video, bg, on_frames)
            sink.close()
        except BaseException as e:
            sink.abort()
            if not isinstance(e, Exception):
                raise  # Ctrl-C: the temporary output is gone, the interruption goes on up
            row.status, row.error = "failed", _reason(e)
            return row
    row.outputs = [str(final)]
    return row


def _pipeline(
    reader: VideoReader,
    sink: VideoSink | FrameFolder,
    model: ModelStep,
    post: PostOptions,
    out: OutputOptions,
    video: VideoOptions,
    bg: Background | None,
    on_frames: Callable[[int], None],
) -> int:
    batch_size = model.batch_size
    frames: queue.Queue = queue.Queue(maxsize=2 * batch_size)
    jobs: queue.Queue = queue.Queue(maxsize=2 * batch_size)
    stop = threading.Event()
    failure: list[BaseException | None] = [None]
    decoder = threading.Thread(target=_produce, args=(reader.frames(), frames, stop), daemon=True)
    writer = threading.Thread(target=_consume, args=(sink, jobs, failure), daemon=True)
    decoder.start()
    writer.start()
    steady = Steady(video.steady)
    count = 0

    def job(frame: Frame, mask: np.ndarray) -> Callable[[], tuple[np.ndarray, int | None, int] | None]:
        def run() -> tuple[np.ndarray, int | None, int] | None:
            rendered = render(frame.rgb, None, mask, post, out, bg, model.size)
            if not rendered.images:  # a crop of a frame with nothing in it: that number is left out
                return None
            return rendered.images[0][1], frame.pts, frame.index

        return run

    try:
        ended = False
        while not ended:
            batch: list[Frame] = []
            while len(batch) < batch_size:
                item = frames.get()
                if item is _END:
                    ended = True
                    break
                if isinstance(item, _Failed):
                    raise item.error
                batch.append(item)
            if not batch:
                break
            inputs = [model_input(f.rgb, model.size, model.interpolation) for f in batch]
            for frame, mask in zip(batch, model.masks(inputs, [f.rgb.shape[:2] for f in batch]), strict=True):
                if isinstance(mask, DeviceMemoryError):
                    raise mask  # a frame that does not fit even alone: this video fails, the run goes on
                if failure[0] is not None:
                    raise failure[0]
                jobs.put(job(frame, steady(mask)))
            count += len(batch)
            on_frames(len(batch))
    finally:
        stop.set()
        jobs.put(_END)
        writer.join()
        decoder.join()  # before the reader closes: FFmpeg must not decode from a closed file
    if failure[0] is not None:
        raise failure[0]
    return count
