"""What the server lets run at once, and how a request's work is called off.

``MemoryBudget`` admits requests by the memory their images will take (bytes in flight, not the
request count): one that does not fit waits, and at most ``max_waiting`` wait. ``Job`` is one
request's work: its stages run only while it has not been called off (a passed deadline, a client
that went away, the server stopping), so a request nobody waits for stops at its next stage.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class CalledOff(Exception):
    """The job was called off before this stage: its result would reach nobody."""


class Job:
    """One request's stages; any thread may call it off, the next stage then raises ``CalledOff``."""

    def __init__(self) -> None:
        self._off = threading.Event()

    def call_off(self) -> None:
        self._off.set()

    @property
    def called_off(self) -> bool:
        return self._off.is_set()

    def run(self, stage: Callable[..., T], *args: object) -> T:
        """Run one stage (in whichever thread calls this) unless the job was called off."""
        if self._off.is_set():
            raise CalledOff
        return stage(*args)


class TooLarge(Exception):
    """The request alone needs more than the whole budget: it would never be admitted."""


class Full(Exception):
    """As many requests are already waiting as may wait."""


class MemoryBudget:
    """Bytes that admitted requests may hold at once. Created inside the event loop."""

    def __init__(self, total: int, max_waiting: int) -> None:
        self.total, self.max_waiting = total, max_waiting
        self.used = 0
        self.waiting = 0
        self.peak = 0  # the most bytes admitted at once (shown by /health)
        self._changed = asyncio.Condition()

    async def admit(self, cost: int, timeout: float) -> None:
        """Hold ``cost`` bytes once they fit; ``TimeoutError`` if they do not within ``timeout``."""
        if cost > self.total:
            raise TooLarge
        async with self._changed:
            if self.used + cost > self.total:
                if self.waiting >= self.max_waiting:
                    raise Full
                self.waiting += 1
                try:
                    await asyncio.wait_for(self._changed.wait_for(lambda: self.used + cost <= self.total), timeout)
                finally:
                    self.waiting -= 1
            self.used += cost
            self.peak = max(self.peak, self.used)

    async def release(self, cost: int) -> None:
        async with self._changed:
            self.used -= cost
            self._changed.notify_all()
