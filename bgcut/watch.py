"""``bgcut FOLDER -o OUT --watch``: cut out the folder, then keep cutting out what arrives in it.

After the first pass (a normal run: resume, manifest and settings as ever), the input folders are
watched. A new or replaced file is taken once it is completely written: its size and time have
stayed the same for ``STABLE_SECONDS`` (a copy in progress keeps growing; a file renamed into
place is complete at once). Each batch of ready files is one more run into the same output
folder, with the model loaded once for all of them; a replaced file is cut out again. A deleted
input leaves its output where it is. Ctrl-C or SIGTERM ends the watch, and the summary counts
every batch.

File events come from ``watchfiles`` (``pip install 'bgcut[watch]'``) where it is installed; they
only wake the loop. Without it, or with ``poll=True`` (network file systems, where events do not
arrive), the folders are scanned every ``POLL_SECONDS``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from time import monotonic

from .config import OutputOptions, PostOptions, RunOptions, VideoOptions
from .errors import UsageError
from .pipeline.infer import Predictor
from .pipeline.report import NO_INPUTS, RunSummary, log_to_stderr, printable
from .run import remove_backgrounds
from .storage import is_url

STABLE_SECONDS = 1.0  # unchanged this long: completely written
POLL_SECONDS = 0.25  # how often sizes are compared while a file is settling, or without events
IDLE_SECONDS = 2.0  # with file events: a full scan this often all the same, in case one was missed

Signature = tuple[int, int]  # size, mtime in ns


def _snapshot(folders: list[Path], skip: Path) -> dict[str, Signature]:
    """Every visible file under ``folders`` (the output folder and hidden names left out)."""
    found: dict[str, Signature] = {}
    for root in folders:
        for folder, dirs, files in os.walk(root, followlinks=True):
            here = Path(folder)
            dirs[:] = [d for d in dirs if not d.startswith(".") and (here / d).resolve() != skip]
            for name in files:
                if name.startswith("."):
                    continue  # a temporary name (a copy in progress, ours), or the settings file
                path = os.path.abspath(os.path.join(folder, name))
                try:
                    st = os.stat(path)
                except OSError:
                    continue  # gone since it was listed
                found[path] = (st.st_size, st.st_mtime_ns)
    return found


def _add(total: RunSummary, batch: RunSummary) -> None:
    for name in ("done", "skipped", "empty", "failed", "review"):
        setattr(total, name, getattr(total, name) + getattr(batch, name))
    total.rows.extend(batch.rows)
    total.seconds += batch.seconds
    for ext, n in batch.passed_over.items():
        total.passed_over[ext] = total.passed_over.get(ext, 0) + n
    total.manifest_error = total.manifest_error or batch.manifest_error
    total.interrupted = total.interrupted or batch.interrupted


@dataclass
class _Waker:
    """Wakes the loop on file events (watchfiles), in a thread of its own; a no-op without them."""

    folders: list[Path]
    poll: bool

    def __post_init__(self) -> None:
        self.woke, self.stop = threading.Event(), threading.Event()
        self.events = False
        if self.poll:
            return
        try:
            import watchfiles
        except ImportError:
            return
        self.events = True

        def listen() -> None:
            for _ in watchfiles.watch(*self.folders, stop_event=self.stop, yield_on_timeout=False):
                self.woke.set()

        threading.Thread(target=listen, name="bgcut-watch", daemon=True).start()

    def wait(self, settling: bool) -> None:
        timeout = POLL_SECONDS if settling or not self.events else IDLE_SECONDS
        self.woke.wait(timeout)
        self.woke.clear()


def watch(
    inputs: list[str],
    output: str,
    run: RunOptions | None = None,
    out: OutputOptions | None = None,
    post: PostOptions | None = None,
    *,
    video: VideoOptions | None = None,
    progress: bool | None = None,
    log: Callable[[str], None] = log_to_stderr,
    poll: bool = False,
    stop: threading.Event | None = None,
) -> RunSummary:
    """Cut out ``inputs`` into ``output``, then what arrives in them, until Ctrl-C, SIGTERM or ``stop``.

    Raises:
        UsageError: an input is not a local folder, or the options do not fit (as a run's).
    """
    run = run or RunOptions()
    not_folders = [i for i in inputs if is_url(i) or not Path(i).is_dir()]
    if not inputs or not_folders:
        named = not_folders[0] if not_folders else "-"
        raise UsageError(f"--watch watches local folders; {named} is not one")
    if run.engine != "local":
        raise UsageError("--watch runs on the local engine: leave out --engine ray")
    folders = [Path(i) for i in inputs]
    skip = Path(output).resolve()
    stop = stop or threading.Event()
    total = RunSummary()
    waker = _Waker(folders, poll)
    kwargs = {"video": video, "progress": progress, "log": log}
    try:
        predictor = Predictor.from_options(run)
        seen = _snapshot(folders, skip)
        # An empty folder is where a watch often starts: not an error, as it is for a plain run.
        first = {**kwargs, "log": lambda line: None if line.startswith(NO_INPUTS) else log(line)}
        _add(total, remove_backgrounds(inputs, output, run, out, post, predictor=predictor, **first))
        if progress is not False:  # -q says nothing but errors
            log(f"bgcut: watching {printable(', '.join(inputs))} for new or replaced images; Ctrl-C or SIGTERM stops")
        settling: dict[str, tuple[Signature, float]] = {}  # changed files: what they were, since when
        while not stop.is_set() and not total.interrupted:
            waker.wait(bool(settling))
            now, at = _snapshot(folders, skip), monotonic()
            for path, sig in now.items():
                if seen.get(path) != sig and settling.get(path, (None,))[0] != sig:
                    settling[path] = (sig, at)  # new, or still changing: its clock starts again
            for path in [p for p in settling if p not in now]:
                del settling[path]  # deleted before it settled
            seen = {p: s for p, s in seen.items() if p in now}  # a deleted input's output stays
            ready = {p for p, (sig, since) in settling.items() if at - since >= STABLE_SECONDS}
            if ready:
                for path in ready:
                    seen[path] = settling.pop(path)[0]
                batch = remove_backgrounds(inputs, output, run, out, post, predictor=predictor, redo=ready, **kwargs)
                _add(total, batch)
    except KeyboardInterrupt:
        total.interrupted = True
    finally:
        waker.stop.set()
    return total
