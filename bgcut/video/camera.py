"""Live mode: a camera (or a video file read the same way) -> cut-out frames, shown and/or written.

OpenCV's ``VideoCapture`` reads a camera by its index or a file by its path, so the file is
how this is tested. Each frame runs alone through the model (a live stream wants the newest
frame, not a batch), then the same ``Steady`` and ``render`` as a video file. The preview is
a Tk window (the standard library's GUI: bgcut's OpenCV is the headless build, without one)
showing the frame composited onto ``--bg`` (a checkerboard when none, so transparency shows)
and the frame rate. ``-o`` writes the cut-out as a video through ``encode.VideoSink``.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from ..config import MAX_FRAMES, VIDEO_FILE_EXTENSIONS, VIDEO_FORMATS, OutputOptions, PostOptions, check_value
from ..errors import UsageError, VideoError
from ..images import checkerboard
from ..pipeline.infer import Predictor
from ..pipeline.postprocess import WHITE, Background, composite, render
from .encode import VideoSink
from .stability import Steady


@dataclass
class CameraSummary:
    frames: int = 0
    seconds: float = 0.0
    output: str | None = None

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def open_capture(source: str) -> cv2.VideoCapture:
    """A camera index ("0") or a video file's path; a clear error when nothing can be read."""
    target: int | str = int(source) if source.isdigit() else source
    if isinstance(target, str) and not Path(target).exists():
        raise UsageError(f"{source}: no such camera or video file")
    # OpenCV's backends print "[ WARN:0@0.7] ... can't open camera by index" lines of their own
    # while they try; bgcut's one line below says it.
    previous = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    try:
        capture = cv2.VideoCapture(target)
    finally:
        cv2.utils.logging.setLogLevel(previous)
    if not capture.isOpened():
        capture.release()
        what = f"camera {target}" if isinstance(target, int) else target
        raise UsageError(f"{what}: cannot be opened (no such device, or no permission to read it)")
    return capture


class Preview:
    """A Tk window showing RGB frames; closed by the user with q, Esc or the window's close box."""

    def __init__(self, title: str) -> None:
        import tkinter

        from PIL import ImageTk

        self._imagetk = ImageTk
        try:
            self.root = tkinter.Tk()
        except tkinter.TclError as e:
            raise UsageError(f"no window can be opened ({e}); use --no-window with -o FILE") from None
        self.root.title(title)
        self.label = tkinter.Label(self.root)
        self.label.pack()
        self.open = True
        self.root.protocol("WM_DELETE_WINDOW", self.close)
        for key in ("q", "<Escape>"):
            self.root.bind(key, lambda _e: self.close())
        self._photo = None

    def show(self, rgb: np.ndarray) -> None:
        from PIL import Image

        self._photo = self._imagetk.PhotoImage(Image.fromarray(rgb))  # kept: Tk does not hold a reference
        self.label.configure(image=self._photo)
        self.root.update()

    def close(self) -> None:
        if self.open:
            self.open = False
            self.root.destroy()


def _on(rendered: np.ndarray, back: Background) -> np.ndarray:
    """A rendered frame as RGB: an RGBA cut-out composited onto ``back``; a frame ``render``
    already put on --bg, as it is."""
    return composite(rendered[:, :, :3], rendered[:, :, 3], back) if rendered.shape[2] == 4 else rendered


def _label(rgb: np.ndarray, text: str) -> np.ndarray:
    out = rgb.copy()
    cv2.putText(out, text, (10, 28), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (0, 0, 0), 4, cv2.LINE_AA)
    cv2.putText(out, text, (10, 28), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (255, 255, 255), 2, cv2.LINE_AA)
    return out


def run_camera(
    source: str,
    predictor: Predictor,
    post: PostOptions,
    bg: Background | None,
    *,
    output: Path | None = None,
    window: bool = True,
    max_frames: int | None = None,
    steady: float = 0.0,
    quality: int = 20,
    on_frame: Callable[[int, np.ndarray], None] | None = None,
) -> CameraSummary:
    """Cut out frames from ``source`` until it ends, the window is closed, ``max_frames`` or Ctrl-C.

    ``on_frame(n, shown)`` is called after each frame is shown (tests take screenshots there).
    """
    if output is not None and output.suffix.lower() not in VIDEO_FILE_EXTENSIONS:
        raise UsageError(f"-o {output}: expected a {', '.join(VIDEO_FILE_EXTENSIONS)} file")
    if not window and output is None:
        raise UsageError("--no-window needs -o FILE: otherwise nothing would come of the frames")
    check_value("--max-frames", max_frames, MAX_FRAMES)
    capture = open_capture(source)
    preview = Preview(f"bgcut camera: {source}") if window else None
    summary = CameraSummary(output=str(output) if output else None)
    spec = VIDEO_FORMATS[VIDEO_FILE_EXTENSIONS[output.suffix.lower()]] if output is not None else None
    look = OutputOptions(format="png-alpha")
    smoother, sink, board = Steady(steady), None, None
    last_ms = -1
    times: deque[float] = deque(maxlen=30)
    started = time.perf_counter()
    try:
        while max_frames is None or summary.frames < max_frames:
            ok, bgr = capture.read()
            if not ok:
                break
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            h, w = rgb.shape[:2]
            mask = smoother(next(predictor.masks([predictor.prepare(rgb)], [(h, w)])))
            rendered = render(rgb, None, mask, post, look, bg, predictor.size).images[0][1]
            if sink is None and spec is not None and output is not None:
                # Times from the source: a file's own, a camera's as they were captured (milliseconds).
                sink = VideoSink(output, spec, w, h, None, Fraction(1, 1000), quality)
            if sink is not None:
                pixels = _on(rendered, WHITE) if spec is not None and spec.pixels == "flat" else rendered
                stamp = capture.get(cv2.CAP_PROP_POS_MSEC) if not source.isdigit() else None
                ms = round(stamp) if stamp is not None else round(1000 * (time.perf_counter() - started))
                last_ms = ms = max(ms, last_ms + 1)  # a container needs rising times; OpenCV's may repeat
                sink.write(pixels, ms, summary.frames)
            summary.frames += 1
            times.append(time.perf_counter())
            if preview is not None:
                if board is None or board.shape[:2] != (h, w):
                    board = checkerboard(w, h)
                shown = _on(rendered, Background(image=board))
                rate = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0
                shown = _label(shown, f"{rate:.1f} fps  {predictor.model_name}")
                preview.show(shown)
                if on_frame is not None:
                    on_frame(summary.frames, shown)
                if not preview.open:
                    break
            elif on_frame is not None:
                on_frame(summary.frames, rendered)
        if sink is not None:
            sink.close()
            sink = None
    except KeyboardInterrupt:
        pass  # Ctrl-C ends a live session; what was recorded so far is kept
    except BaseException:
        if sink is not None:
            sink.abort()  # a failure: no half-made file under the real name
            sink = None
        raise
    finally:
        if sink is not None:
            try:
                sink.close()  # interrupted: the frames so far make a whole, playable file
            except (OSError, VideoError):
                sink.abort()
        capture.release()
        if preview is not None:
            preview.close()
        summary.seconds = time.perf_counter() - started
    return summary
