"""A background job that runs every few seconds until stopped (key reloads, discovery)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


class Periodic:
    def __init__(self, name: str, interval_s: float, action: Callable[[], Awaitable[None]]) -> None:
        self._name = name
        self._interval_s = interval_s
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
        while True:
            await asyncio.sleep(self._interval_s)
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
