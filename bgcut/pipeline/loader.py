"""Decoded inputs from worker processes, read ahead within a memory bound, surviving a worker that dies.

``DecodedParts`` starts its workers as it is made, so decoding can begin while the main
process is still importing torch and loading the model (``bgcut/run.py``); iterating it gives
the inputs in order, a few files (a *part*) at a time.

- **Workers.** Plain processes from bgcut's fork server (``bgcut.workers``), which imports the
  decoder and not torch: they start in a tenth of a second. They run at a lower priority
  (``NICE``): on a machine with few cores the main process's model is the critical path, and
  a worker only takes the cores it leaves.
- **Hand-over.** A worker copies a part's arrays into one anonymous in-memory file and sends
  its descriptor over a socket (``dataset.pack``); the main process maps it, with no copy and
  no pickling of pixels, and nothing is left in /dev/shm by a killed run.
- **Read-ahead.** Parts are handed out while fewer than ``IN_HANDS`` per worker are being
  decoded and less than ``READ_AHEAD_BYTES`` of decoded parts wait for the main process.
- **Deaths.** A decode worker can die under the run: the kernel's out-of-memory killer picks
  it, someone runs ``kill -9`` on it, or a decoder crashes on a file. The parts that were in
  the workers' hands are then decoded again one file at a time in a fresh single worker, so a
  file that kills a worker again is reported by name and costs no other file; a new pool
  takes the rest.
"""

from __future__ import annotations

import contextlib
import multiprocessing.context
import os
import socket
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures import wait as wait_for_all
from concurrent.futures.process import BrokenProcessPool

from ..workers import GIVE_UP_AFTER, kill_survivors, worker_context
from .dataset import DecodeDataset, DecodeItem, decode_part, init_worker, unpack

PART_FILES = 4  # files per worker task: a part is also what a worker's death can cost
# A part also ends once its files take this much on disk: four 100 MP JPEGs (6 MB each) decode
# to 1.2 GB, held in memory as one block until the last of them is written (bench/RESULTS.md).
PART_BYTES = 4 << 20
IN_HANDS = 2  # parts per worker being decoded at a time
READ_AHEAD_BYTES = 512 << 20  # decoded parts waiting for the main process, at most (bench/RESULTS.md)
NICE = 19  # the workers' niceness (``os.nice``): measured best on 2 cores (bench/RESULTS.md)
_STOP = b"stop"  # told to the receiving thread by the main process itself
_DIED_TWICE = "the decode worker process died twice while reading this file"


class DecodedParts:
    """``dataset`` decoded in ``workers`` processes (0: in this process, as it is iterated), in
    parts of consecutive indices (``part_files``, fewer for large files: ``_parts``), yielded in
    order. Iterate once; ``close`` stops the workers (also when the parts were not all taken)."""

    def __init__(
        self,
        dataset: DecodeDataset,
        workers: int,
        warn: Callable[[str], None],
        part_files: int = PART_FILES,
        nice: int = NICE,
    ) -> None:
        self.dataset, self.workers, self.warn, self.nice = dataset, workers, warn, nice
        self.parts = _parts(dataset, part_files)
        self._ctx = worker_context() if workers and self.parts else None
        self._pool = _Pool(self._ctx, dataset, self.parts, workers, nice) if self._ctx is not None else None
        self._reason = ""

    def __iter__(self) -> Iterator[list[DecodeItem]]:
        # Files in a row that each killed a worker alone (a pool's death is not counted: the
        # parts it took can hold several such files, each counted once it dies alone); parts yielded.
        deaths, done = 0, 0
        while done < len(self.parts) and deaths < GIVE_UP_AFTER and self._ctx is not None:
            pool = self._pool or _Pool(self._ctx, self.dataset, self.parts[done:], self.workers, self.nice)
            self._pool, told = pool, False
            try:
                for items in pool.results():
                    if items is None:  # lost with a worker that died
                        if not told:  # one death, however many parts it took
                            told = True
                            lost = pool.lost_files()
                            self.warn(
                                f"a decode worker died ({pool.reason}); retrying its {lost} file(s) one at a time"
                            )
                        items, deaths = self._retried(self.parts[done], deaths)
                    else:
                        deaths = 0
                    done += 1
                    yield items
                    if deaths >= GIVE_UP_AFTER:
                        break
            finally:
                self.close()
        if deaths >= GIVE_UP_AFTER:
            self.warn(
                f"decode worker processes died {deaths} times in a row ({self._reason}); "
                "decoding in this process from now on"
            )
        for part in self.parts[done:]:
            yield [self.dataset[i] for i in part]

    def close(self) -> None:
        """Stop the workers; parts not yet taken are dropped."""
        if self._pool is not None:
            self._reason = self._pool.reason
            self._pool.close()
            self._pool = None

    def _retried(self, part: list[int], deaths: int) -> tuple[list[DecodeItem], int]:
        """A lost part's files decoded again one at a time in a single worker, a fresh one after
        each death; a file during which a worker dies again is an error. Once deaths reach
        ``GIVE_UP_AFTER``, the files left are decoded in this process."""
        items: list[DecodeItem] = []
        todo = list(part)
        while todo and deaths < GIVE_UP_AFTER:
            pool = _Pool(self._ctx, self.dataset, [[i] for i in todo], 1, self.nice)  # type: ignore[arg-type]
            try:
                for got in pool.results():
                    i = todo.pop(0)
                    if got is None:
                        deaths += 1
                        self._reason = pool.reason
                        items.append(DecodeItem(i, error=_DIED_TWICE))
                        break
                    deaths = 0
                    items.extend(got)
            finally:
                pool.close()
        items.extend(self.dataset[i] for i in todo)
        return items, deaths


def _parts(dataset: DecodeDataset, part_files: int) -> list[list[int]]:
    """Consecutive indices, ``part_files`` to a part, or fewer where the files are large on disk
    (``PART_BYTES``); a file whose size cannot be read (a URL) counts as small."""
    paths = getattr(dataset, "paths", None)
    parts: list[list[int]] = []
    part: list[int] = []
    size = 0
    for i in range(len(dataset)):
        part.append(i)
        size += _size_on_disk(paths[i]) if paths is not None else 0
        if len(part) == part_files or size >= PART_BYTES:
            parts.append(part)
            part, size = [], 0
    if part:
        parts.append(part)
    return parts


def _size_on_disk(path: str) -> int:
    try:
        return os.stat(path).st_size
    except (OSError, TypeError, ValueError):
        return 0


class _Pool:
    """One pool of decode workers over ``parts``, handing them out as the read-ahead allows."""

    def __init__(
        self,
        ctx: multiprocessing.context.BaseContext,
        dataset: DecodeDataset,
        parts: list[list[int]],
        workers: int,
        nice: int,
    ) -> None:
        self.dataset, self.parts, self.workers = dataset, parts, workers
        self.reason = ""
        self._main_end, self._worker_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._executor = ProcessPoolExecutor(
            workers, mp_context=ctx, initializer=init_worker, initargs=(os.getpid(), self._worker_end, nice)
        )
        self._cond = threading.Condition()
        self._futures: list[Future] = []
        self._blocks: dict[int, int | None] = {}  # parts arrived and not taken: their descriptors
        self._sizes: dict[int, int] = {}
        self._arrived = self._waiting_bytes = 0
        self._broken = self._closing = False
        self._receiving = True
        self._receiver = threading.Thread(target=self._receive, name="bgcut-decode-receive", daemon=True)
        self._receiver.start()
        with self._cond:
            self._hand_out()

    def results(self) -> Iterator[list[DecodeItem] | None]:
        """Each part's items in order, or None for a part lost with a worker; ends early, after the
        parts handed out, when the pool broke."""
        for k in range(len(self.parts)):
            with self._cond:
                self._cond.wait_for(lambda k=k: k < len(self._futures) or self._broken)
                if k >= len(self._futures):
                    return
                future = self._futures[k]
            try:
                layouts = future.result()
            except BrokenProcessPool as e:
                with self._cond:
                    self._broken = True
                    self.reason = self.reason or " ".join(str(e).split()).rstrip(".")
                    self._cond.notify_all()
                yield None
                continue
            except Exception as e:  # noqa: BLE001 - the hand-over itself failed (memory, descriptors): these files fail
                yield [DecodeItem(i, error=f"cannot hand the decoded image over: {e}") for i in self.parts[k]]
                continue
            with self._cond:
                self._cond.wait_for(lambda k=k: k in self._blocks or not self._receiving)
                fd = self._blocks.pop(k, None)
                self._waiting_bytes -= self._sizes.pop(k, 0)
                self._hand_out()
            yield unpack(fd, layouts)

    def lost_files(self) -> int:
        """How many files the broken pool's unfinished parts hold."""
        wait_for_all(self._futures)
        lost = [k for k, f in enumerate(self._futures) if isinstance(f.exception(), BrokenProcessPool)]
        return sum(len(self.parts[k]) for k in lost)

    def close(self) -> None:
        with self._cond:
            self._closing = True
            broken = self._broken
        if broken:
            kill_survivors(self._executor)
        self._executor.shutdown(wait=True, cancel_futures=True)
        with contextlib.suppress(OSError):
            self._worker_end.send(_STOP)  # after every worker's own messages
        self._receiver.join()
        for sock in (self._main_end, self._worker_end):
            sock.close()
        for fd in self._blocks.values():
            if fd is not None:
                os.close(fd)
        self._blocks.clear()

    def _hand_out(self) -> None:
        """Submit parts while the read-ahead allows (the caller holds the lock)."""
        while (
            len(self._futures) < len(self.parts)
            and not (self._broken or self._closing)
            and len(self._futures) - self._arrived < IN_HANDS * self.workers
            and self._waiting_bytes < READ_AHEAD_BYTES
        ):
            k = len(self._futures)
            part = self.parts[k]
            try:
                self._futures.append(self._executor.submit(decode_part, k, self.dataset.part(part), part))
            except (BrokenProcessPool, RuntimeError):  # broken, or shut down: what was handed out is all
                self._broken = True
                self._cond.notify_all()
                return
            self._cond.notify_all()

    def _receive(self) -> None:
        """The receiving thread: each part's block as its worker sends it."""
        while True:
            try:
                message, fds, _flags, _address = socket.recv_fds(self._main_end, 16, 1)
            except OSError:
                break
            if message == _STOP or not message:
                for fd in fds:
                    os.close(fd)
                break
            fd = fds[0] if fds else None
            size = os.fstat(fd).st_size if fd is not None else 0
            with self._cond:
                k = int.from_bytes(message, "little")
                self._blocks[k], self._sizes[k] = fd, size
                self._arrived += 1
                self._waiting_bytes += size
                self._hand_out()
                self._cond.notify_all()
        with self._cond:
            self._receiving = False
            self._cond.notify_all()
