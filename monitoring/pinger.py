"""Ping/echo: the service asks every device "are you there?" on a fixed period.

Each device gets its own phase within the period (from its id, plus a little random
jitter each round), so thousands of checks spread evenly instead of bunching up at the
top of every period; a semaphore bounds how many are in flight.

Every ping goes through the egress policy (monitoring.egress): to a checked address, with
no redirects followed and at most a few KiB of the answer read.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import random
import time
import zlib
from collections.abc import Awaitable, Callable

import aiohttp

from monitoring.egress import EgressPolicy, EgressRefused

OnResult = Callable[[str, bool, str], Awaitable[None]]
# An echo needs no body: what a device (or whatever hides behind its URL) sends beyond
# this is not read.
MAX_ECHO_BYTES = 4096


class Pinger:
    def __init__(
        self,
        *,
        interval_s: float,
        timeout_s: float,
        concurrency: int,
        on_result: OnResult,
        egress: EgressPolicy,
        jitter: float = 0.05,
    ) -> None:
        self._egress = egress
        self.interval_s = interval_s
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._semaphore = asyncio.Semaphore(concurrency)
        self._concurrency = concurrency
        self._on_result = on_result
        self._jitter = jitter
        self._targets: dict[str, tuple[str, str]] = {}  # device → (url, branch)
        self._due: list[tuple[float, str]] = []
        # Each device's one live schedule entry; older heap entries for it are stale.
        self._next: dict[str, float] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._checks: set[asyncio.Task[None]] = set()

    def set_target(self, device_id: str, url: str, branch_id: str) -> None:
        known = device_id in self._targets
        self._targets[device_id] = (url, branch_id)
        if not known:
            self._plan(device_id, self._first_due(device_id))

    def remove_target(self, device_id: str) -> None:
        self._targets.pop(device_id, None)
        self._next.pop(device_id, None)  # its heap entry is dropped when it comes due

    def recheck(self, device_id: str, after_s: float) -> None:
        """Check ``device_id`` again soon (a failed ping is confirmed, not left a whole period)."""
        if device_id in self._targets:
            self._plan(device_id, time.monotonic() + after_s)

    def _plan(self, device_id: str, due: float) -> None:
        self._next[device_id] = due
        heapq.heappush(self._due, (due, device_id))
        self._wake.set()

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=self._concurrency, ttl_dns_cache=300)
        self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
        self._task = asyncio.create_task(self._schedule(), name="pinger")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for check in list(self._checks):
            check.cancel()
        await asyncio.gather(*self._checks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    def _first_due(self, device_id: str) -> float:
        phase = (zlib.crc32(device_id.encode()) % 10_000) / 10_000 * self.interval_s
        return time.monotonic() + phase

    async def _schedule(self) -> None:
        while True:
            if not self._due:
                self._wake.clear()
                await self._wake.wait()
                continue
            due, device_id = self._due[0]
            delay = due - time.monotonic()
            if delay > 0:
                self._wake.clear()
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel that
                # arrives as the event is set (a device hanging up during shutdown), and
                # stop() would then wait for ever.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._wake.wait()
                continue
            heapq.heappop(self._due)
            target = self._targets.get(device_id)
            if target is None or self._next.get(device_id) != due:
                continue
            spread = self.interval_s * self._jitter
            next_due = due + self.interval_s + random.uniform(-spread, spread)
            self._next[device_id] = next_due
            heapq.heappush(self._due, (next_due, device_id))
            await self._semaphore.acquire()
            check = asyncio.create_task(self._check(device_id, *target))
            self._checks.add(check)
            check.add_done_callback(self._checks.discard)

    async def _check(self, device_id: str, url: str, branch_id: str) -> None:
        try:
            ok, detail = await self._echo(url, branch_id)
        finally:
            self._semaphore.release()
        await self._on_result(device_id, ok, detail)

    async def _echo(self, url: str, branch_id: str) -> tuple[bool, str]:
        assert self._session is not None
        try:
            target = await self._egress.target(branch_id, url)
        except EgressRefused as exc:
            return False, f"refused: {exc.reason}"[:200]
        try:
            async with self._session.get(
                target.url,
                headers={"host": target.host_header},
                server_hostname=target.host if target.url.scheme == "https" else None,
                allow_redirects=False,
            ) as response:
                await _read_at_most(response, MAX_ECHO_BYTES)
                if 200 <= response.status < 300:
                    return True, ""
                return False, f"status {response.status}"
        except TimeoutError:
            return False, "timeout"
        except aiohttp.ClientError as exc:
            return False, type(exc).__name__


async def _read_at_most(response: aiohttp.ClientResponse, limit: int) -> None:
    """Read a small answer to its end (so the connection is kept alive for the next
    ping) but never more than ``limit`` bytes: a longer one is cut with its connection."""
    received = 0
    while received <= limit and not response.content.at_eof():
        chunk = await response.content.read(limit + 1 - received)
        if not chunk:
            return
        received += len(chunk)
