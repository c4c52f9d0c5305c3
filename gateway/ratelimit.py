"""Rate limits per principal (or client address) and route, in memory or shared through
Redis by every gateway replica (the `limits` library, moving windows)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from limits import RateLimitItem, parse
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after_s: int = 0


class RateLimits:
    def __init__(self, storage_url: str, *, per_address: str) -> None:
        # memory:// is per process; redis://… is shared by every replica. The asyncio
        # flavour of a storage is its URL with an "async+" prefix.
        url = storage_url if storage_url.startswith("async+") else f"async+{storage_url}"
        self._limiter = MovingWindowRateLimiter(storage_from_string(url))
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
        if await self._limiter.hit(item, *identifiers):
            return Verdict(True)
        stats = await self._limiter.get_window_stats(item, *identifiers)
        return Verdict(False, max(1, int(stats.reset_time - time.time() + 0.999)))

    def _item(self, limit: str) -> RateLimitItem:
        item = self._items.get(limit)
        if item is None:
            item = self._items[limit] = parse(limit)
        return item
