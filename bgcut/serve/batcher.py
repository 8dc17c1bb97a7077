"""Requests that arrive together run as one batch on the one model.

The model runs in one thread of its own. A request puts its model input on a bounded queue
and gets a future; the model thread takes the first waiting input, waits at most
``max_wait`` for more (up to ``max_batch``), runs them in one forward pass
(``Predictor.masks``) and resolves each future with its own full-size mask. A full queue
refuses at once (``Busy``) instead of growing: the server answers 503 with Retry-After.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np
import torch

from ..pipeline.infer import Predictor
from .admission import CalledOff, Job


class Busy(Exception):
    """The queue is full: come back later."""


@dataclass
class BatchStats:
    batches: int = 0
    requests: int = 0

    @property
    def mean_batch(self) -> float:
        return self.requests / self.batches if self.batches else 0.0


_STOP = object()


class Batcher:
    def __init__(self, predictor: Predictor, max_batch: int, max_wait: float, max_queue: int) -> None:
        self.predictor, self.max_batch, self.max_wait = predictor, max_batch, max_wait
        self.queue: queue.Queue = queue.Queue(maxsize=max_queue)
        self.stats = BatchStats()
        self.thread = threading.Thread(target=self._run, name="bgcut-serve-model", daemon=True)
        self.thread.start()

    def submit(self, model_input: torch.Tensor, size: tuple[int, int], job: Job | None = None) -> Future[np.ndarray]:
        """Queue one photo's model input (``Predictor.prepare``); the future gets its (H, W) mask,
        or ``CalledOff`` when ``job`` was called off before its batch ran."""
        future: Future[np.ndarray] = Future()
        try:
            self.queue.put_nowait((model_input, size, future, job or Job()))
        except queue.Full:
            raise Busy from None
        return future

    @property
    def waiting(self) -> int:
        return self.queue.qsize()

    def close(self) -> None:
        self.queue.put(_STOP)  # blocks only while the queue is full, which the model thread drains
        self.thread.join(timeout=30)

    def _collect(self) -> list | None:
        first = self.queue.get()
        if first is _STOP:
            return None
        batch = [first]
        deadline = time.monotonic() + self.max_wait
        while len(batch) < self.max_batch:
            left = deadline - time.monotonic()
            try:
                item = self.queue.get(timeout=left) if left > 0 else self.queue.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                self.queue.put(_STOP)  # run this batch, then stop
                break
            batch.append(item)
        return batch

    def _run(self) -> None:
        while (collected := self._collect()) is not None:
            batch = []
            for item in collected:
                future, job = item[2], item[3]
                # A future is cancelled with its request's task (the event loop cancels those left
                # when it closes at a stop; asyncio's wrap_future passes that on), and setting its
                # result would then raise here and end this thread. Marked running, the rest can
                # no longer be cancelled under the forward pass.
                if not future.set_running_or_notify_cancel():
                    continue
                if job.called_off:  # a request nobody waits for any more costs no forward pass
                    future.set_exception(CalledOff())
                else:
                    batch.append(item)
            if not batch:
                continue
            try:
                masks = list(self.predictor.masks([b[0] for b in batch], [b[1] for b in batch], failures="yield"))
            except Exception as e:  # noqa: BLE001 - each waiting request gets the error, the thread lives on
                for _, _, future, _ in batch:
                    future.set_exception(e)
                continue
            self.stats.batches += 1
            self.stats.requests += len(batch)
            for (_, _, future, _), mask in zip(batch, masks, strict=True):
                if isinstance(mask, Exception):  # this image alone does not fit in device memory
                    future.set_exception(mask)
                else:
                    future.set_result(mask)
