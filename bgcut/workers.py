"""Worker processes for every pool bgcut starts: the engine's decode workers, training's
decoders and ``bgcut paste``'s composers, all set up here, one way.

Workers start from a fork server (never a fork of a threaded process, which can hang a worker
on its first OpenCV call), started with a safe ``sys.path``, and never re-run the caller's
script, so bgcut works from a plain script with no ``if __name__ == "__main__":`` guard,
from ``python -``, a notebook or the REPL. A worker ends itself once the main process is gone
(``exit_when_gone``), and a pool of bgcut's own (``map_surviving_deaths``, for ``paste`` and training's cache) goes
on when a worker dies, where ``multiprocessing.Pool`` would wait forever.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.context
import multiprocessing.forkserver
import multiprocessing.popen_forkserver as popen_forkserver
import multiprocessing.process
import multiprocessing.spawn as spawn
import os
import select
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from typing import TypeVar

from .errors import BgcutError

_MAIN_KEYS = ("init_main_from_path", "init_main_from_name")
# The fork server imports this module, which imports the pool's own preload list without the
# cyclic collector (bgcut/_worker_preload.py says why).
_PRELOADER = "bgcut._worker_preload"
PRELOAD_ENV = "BGCUT_WORKER_PRELOAD"


@contextmanager
def _main_left_out() -> Iterator[None]:
    """While a worker is launched, its start-up data does not name this process's ``__main__``.

    multiprocessing re-runs the main script in every child it starts this way, so that objects
    defined there can be unpickled. A decode worker needs nothing from it (its dataset is bgcut's
    own), and a script that calls bgcut without an ``if __name__ == "__main__":`` guard would run
    again in each worker: each would start its own run, and fail. A script read from stdin
    (``python - < script``) would be looked for as a file named ``<stdin>``.
    """
    prepare = spawn.get_preparation_data

    def without_main(name: str) -> dict:
        data = prepare(name)
        for key in _MAIN_KEYS:
            data.pop(key, None)
        return data

    spawn.get_preparation_data = without_main
    try:
        yield
    finally:
        spawn.get_preparation_data = prepare


class _Popen(popen_forkserver.Popen):
    def _launch(self, process_obj: multiprocessing.process.BaseProcess) -> None:
        with _LAUNCH_LOCK, _main_left_out():
            super()._launch(process_obj)


class _WorkerProcess(multiprocessing.context.ForkServerProcess):
    @staticmethod
    def _Popen(process_obj: multiprocessing.process.BaseProcess) -> _Popen:  # noqa: N802 - multiprocessing's name
        return _Popen(process_obj)


class _WorkerContext(multiprocessing.context.ForkServerContext):
    Process = _WorkerProcess


_LAUNCH_LOCK = threading.Lock()  # the swap above is process-wide: one launch at a time


def worker_context(preload: Iterable[str] = ("bgcut.pipeline.dataset",)) -> multiprocessing.context.BaseContext:
    """Decode workers start from a fork server, not by forking this process.

    By the time the workers start, this process has thread pools (OpenCV's, torch's,
    the writer threads); a plain fork copies their locks in whatever state they are in,
    and a worker can hang forever on its first OpenCV call. The fork server is a clean,
    single-threaded process that imports ``preload`` once (the decoder, for the engine), so
    workers still start fast; it imports it through ``bgcut._worker_preload``, with the cyclic
    collector off. The fork server is one per process: the first caller's
    ``preload`` is the one it imports.

    Python starts the fork server with ``-c``, which puts the current folder first on its
    ``sys.path``: a ``concurrent.py`` there would be imported by torch inside it. It is started
    here with ``PYTHONSAFEPATH`` (Python 3.11+), which leaves the current folder out.
    """
    ctx = _WorkerContext()
    ctx.set_forkserver_preload([_PRELOADER])
    _start_quiet_resource_tracker()
    with _environment({"PYTHONSAFEPATH": "1", PRELOAD_ENV: ",".join(preload)}):
        multiprocessing.forkserver.ensure_running()
    return ctx


def _start_quiet_resource_tracker() -> None:
    """multiprocessing's resource tracker, started without its leak warning.

    The pools' queues are named semaphores, which the tracker unlinks when the process that made
    them is gone. After a ``kill -9`` (or the OOM killer) it did so and then printed a two-line
    ``UserWarning: resource_tracker: There appear to be 5 leaked semaphore objects`` into the
    killed command's stderr: library noise, about a clean-up that it had just done. The tracker is
    started before the fork server (which would start it, and hand it on), with that one
    module's warnings ignored; the clean-up itself is unchanged.
    """
    from multiprocessing import resource_tracker

    quiet = f"ignore::UserWarning:{resource_tracker.__name__}"
    given = os.environ.get("PYTHONWARNINGS")
    with _environment({"PYTHONWARNINGS": f"{given},{quiet}" if given else quiet}):
        resource_tracker.ensure_running()


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """These variables set for a process started inside the block, and this process's as before after it."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                del os.environ[key]
            else:
                os.environ[key] = value


def exit_when_gone(main_pid: int) -> None:
    """In a worker: a daemon thread that ends this process once ``main_pid`` has exited.

    Workers are children of the fork server, not of the main process: after a ``kill -9`` or the
    OOM killer took the main process, nothing else would end them, and they would hold the
    caller's stdout and stderr pipes open (and, in a pool, wait for work forever)."""
    threading.Thread(target=_exit_with, args=(main_pid,), name="bgcut-watchdog", daemon=True).start()


def _exit_with(pid: int) -> None:
    try:
        fd = os.pidfd_open(pid)  # Linux 5.3+: readable once the process has exited, no polling
    except (AttributeError, OSError):
        fd = None
    if fd is not None:
        select.select([fd], [], [])
        os._exit(0)
    while True:
        threading.Event().wait(0.5)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            os._exit(0)
        except PermissionError:
            pass  # alive, owned by someone else (cannot happen for our own parent, but harmless)


T = TypeVar("T")
R = TypeVar("R")
GIVE_UP_AFTER = 3  # items in a row that each killed a worker alone: the machine, not an item


class WorkersKeepDyingError(BgcutError):
    """Worker processes died ``GIVE_UP_AFTER`` times in a row: memory, or a broken installation."""


def map_surviving_deaths(
    ctx: multiprocessing.context.BaseContext,
    fn: Callable[[T], R],
    items: Iterable[T],
    workers: int,
    initializer: Callable[..., None],
    initargs: tuple,
    died: Callable[[T], R],
    warn: Callable[[str], None],
    what: str = "item(s)",
) -> Iterator[R]:
    """``fn(item)`` for every item in ``workers`` processes, yielded as each finishes.

    ``multiprocessing.Pool`` waits forever for the result of an item whose worker died (``kill
    -9``, the OOM killer, a decoder's crash). Here a death is seen (``BrokenProcessPool``); the
    items that were in the workers' hands are tried again one at a time in a fresh worker, and
    one during which a worker dies again gives ``died(item)``; the rest go on in a new pool. At
    most ``2 * workers`` items are handed out at a time, so a long list costs no memory ahead.

    Only a death while one item is alone in its worker counts towards ``GIVE_UP_AFTER``: that
    death is the item's, or the machine's. A pool's death is not counted: the executor sees a
    death only after the fork server has reaped the worker, and fast items go on meanwhile, so
    the items lost with a pool can hold several that kill, each counted once it dies alone.
    """
    queue: deque[T] = deque(items)
    deaths = 0
    while queue:
        held: dict[Future, T] = {}
        pool = ProcessPoolExecutor(min(workers, len(queue)), mp_context=ctx, initializer=initializer, initargs=initargs)
        broken = False
        try:
            while (queue or held) and not broken:
                while queue and len(held) < 2 * workers:
                    try:
                        future = pool.submit(fn, queue[0])
                    except BrokenProcessPool:  # a worker died since the last wait
                        broken = True
                        break
                    held[future] = queue.popleft()
                if broken:
                    break
                done, _ = wait(held, return_when=FIRST_COMPLETED)
                for future in done:
                    if isinstance(future.exception(), BrokenProcessPool):
                        broken = True  # its item stays held, to be tried again
                        continue
                    del held[future]
                    deaths = 0
                    yield future.result()
        finally:
            if broken:
                kill_survivors(pool)
            pool.shutdown(wait=True, cancel_futures=True)
        # Items that finished before the death was seen are results, not lost items.
        for future in [f for f in held if not f.cancelled() and f.exception() is None]:
            del held[future]
            yield future.result()
        if not held:
            continue
        lost = list(held.values())
        warn(f"a worker process died; its {len(lost)} unfinished {what} are made again, one at a time")
        for result, again in _one_at_a_time(ctx, fn, lost, initializer, initargs, died):
            deaths = deaths + 1 if again else 0
            if deaths >= GIVE_UP_AFTER:
                raise WorkersKeepDyingError(_GAVE_UP.format(deaths))
            yield result


def kill_survivors(pool: ProcessPoolExecutor) -> None:
    """A broken pool's other workers, killed: the executor ends them with SIGTERM, which bgcut's
    workers ignore (the parent decides), so one blocked sending a large result into a pipe that
    nobody reads any more kept ``shutdown`` waiting for ever. Their items are made again."""
    processes = getattr(pool, "_processes", None) or {}  # the executor's own table, pid -> process
    for process in list(processes.values()):
        process.kill()


_GAVE_UP = "worker processes died {} times in a row: out of memory, or a broken installation? Stopped; a rerun resumes"


def _one_at_a_time(
    ctx: multiprocessing.context.BaseContext,
    fn: Callable[[T], R],
    items: list[T],
    initializer: Callable[..., None],
    initargs: tuple,
    died: Callable[[T], R],
) -> Iterator[tuple[R, bool]]:
    """(result, whether its worker died again) for each item, in order, in one worker at a time."""
    todo = deque(items)
    while todo:
        with ProcessPoolExecutor(1, mp_context=ctx, initializer=initializer, initargs=initargs) as pool:
            while todo:
                item = todo.popleft()
                try:
                    yield pool.submit(fn, item).result(), False
                except BrokenProcessPool:
                    yield died(item), True
                    break  # this pool is done for: a fresh one for the rest
