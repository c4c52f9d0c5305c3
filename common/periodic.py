"""A background job that runs every few seconds until stopped (key reloads, discovery)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


class Periodic:
    def __init__(
        self,
        name: str,
        interval_s: float,
        action: Callable[[], Awaitable[object]],
        *,
        first_after_s: float | None = None,
    ) -> None:
        self._name = name
        self._interval_s = interval_s
        self._first_after_s = interval_s if first_after_s is None else first_after_s
        self._action = action
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self._name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        delay = self._first_after_s
        while True:
            await asyncio.sleep(delay)
            delay = self._interval_s
            try:
                await self._action()
            except Exception:
                # One failed round must not end the job; the next round tries again.
                log.warning("%s failed; trying again in %.0fs", self._name, self._interval_s, exc_info=True)


class Jobs:
    """A service's background jobs, started and stopped together (stopped in reverse)."""

    def __init__(self, *jobs: Periodic) -> None:
        self._jobs = list(jobs)

    async def start(self) -> None:
        for job in self._jobs:
            await job.start()

    async def stop(self) -> None:
        for job in reversed(self._jobs):
            await job.stop()


class LoopLag:
    """How late this process's event loop runs its timers. A loop that runs late answers
    late and judges late: a peer starved of CPU makes our timeouts fire through no fault
    of ours, and a lease holder that runs late renews late. Keeps the moments (wall
    clock) it ran more than ``threshold_s`` late, and tells ``on_late``."""

    def __init__(
        self,
        *,
        every_s: float = 0.05,
        threshold_s: float = 0.2,
        on_late: Callable[[float], None] | None = None,
    ) -> None:
        self._every_s, self._threshold_s = every_s, threshold_s
        self._on_late = on_late
        self.spells: deque[tuple[float, float]] = deque(maxlen=10_000)  # (wall time, seconds late)
        self.worst = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._probe(), name="loop-lag")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _probe(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            planned = loop.time() + self._every_s
            await asyncio.sleep(self._every_s)
            late = loop.time() - planned
            self.worst = max(self.worst, late)
            if late > self._threshold_s:
                self.spells.append((time.time(), late))
                if self._on_late is not None:
                    self._on_late(late)
