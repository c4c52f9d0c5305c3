"""Rate limits per principal (or client address) and route, in memory or shared through
Redis by every gateway replica (moving windows)."""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass

from limits import RateLimitItem, parse
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after_s: int = 0


class MemoryWindows:
    """Moving windows in this process: per key, the times of the hits still inside its
    window, oldest first.

    Not the `limits` library's async memory storage: on every hit whose previous sweep has
    finished it starts a sweep of every key with one thread hop per key, which cost 2-4 ms
    of CPU per request when requests are paced (i.e. always, in production) - most of a
    gateway's CPU. Here a hit prunes only its own key, and keys that fell idle are dropped
    by a sweep at most once per ``sweep_s`` (memory stays bounded by the callers seen within
    the longest window).
    """

    def __init__(self, *, sweep_s: float = 10.0) -> None:
        self._hits: dict[str, tuple[float, deque[float]]] = {}
        self._sweep_s = sweep_s
        self._next_sweep: float | None = None  # set by the first hit

    def __len__(self) -> int:
        return len(self._hits)

    def hit(self, item: RateLimitItem, *identifiers: str, now: float | None = None) -> Verdict:
        now = time.monotonic() if now is None else now
        if self._next_sweep is None:
            self._next_sweep = now + self._sweep_s
        elif now >= self._next_sweep:
            self._sweep(now)
        key = item.key_for(*identifiers)
        window = float(item.get_expiry())
        held = self._hits.get(key)
        if held is None:
            held = self._hits[key] = (window, deque())
        hits = held[1]
        cutoff = now - window
        while hits and hits[0] <= cutoff:
            hits.popleft()
        if len(hits) >= item.amount:
            # Free again when the oldest hit of the window leaves it.
            return Verdict(False, max(1, math.ceil(hits[0] + window - now)))
        hits.append(now)
        return Verdict(True)

    def _sweep(self, now: float) -> None:
        self._next_sweep = now + self._sweep_s
        idle = [key for key, (window, hits) in self._hits.items() if not hits or hits[-1] <= now - window]
        for key in idle:
            del self._hits[key]


class RateLimits:
    def __init__(self, storage_url: str, *, per_address: str) -> None:
        # memory:// is per process; redis://… is shared by every replica (the `limits`
        # library; the asyncio flavour of a storage is its URL with an "async+" prefix).
        bare = storage_url.removeprefix("async+")
        self._memory = MemoryWindows() if bare.startswith("memory://") else None
        self._limiter = (
            None if self._memory is not None else MovingWindowRateLimiter(storage_from_string(f"async+{bare}"))
        )
        self._per_address = parse(per_address)
        self._items: dict[str, RateLimitItem] = {}

    async def check(self, *, route: str, limit: str, principal: str | None, address: str | None) -> Verdict:
        """One hit against the address floor and the route's limit for this caller."""
        if address is not None:
            verdict = await self._hit(self._per_address, "address", address)
            if not verdict.allowed:
                return verdict
        key = f"principal:{principal}" if principal else f"address:{address}"
        return await self._hit(self._item(limit), route, key)

    async def _hit(self, item: RateLimitItem, *identifiers: str) -> Verdict:
        if self._memory is not None:
            return self._memory.hit(item, *identifiers)
        assert self._limiter is not None
        if await self._limiter.hit(item, *identifiers):
            return Verdict(True)
        stats = await self._limiter.get_window_stats(item, *identifiers)
        return Verdict(False, max(1, int(stats.reset_time - time.time() + 0.999)))

    def _item(self, limit: str) -> RateLimitItem:
        item = self._items.get(limit)
        if item is None:
            item = self._items[limit] = parse(limit)
        return item
