"""Rate limits per principal (or client address) and route: moving windows in this
process, or windows shared by every gateway replica through Redis (ADR 0057)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from limits import RateLimitItem, parse
from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)


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


# Adds each counter's unsent hits to its slots and reads every slot's total back, in one
# round trip for all of them. KEYS: slot keys; ARGV: a (hits, expiry in s) pair per key.
_SYNC_SCRIPT = """
local totals = {}
for i = 1, #KEYS do
  local hits = tonumber(ARGV[i * 2 - 1])
  if hits > 0 then
    totals[i] = redis.call('INCRBY', KEYS[i], hits)
    redis.call('EXPIRE', KEYS[i], ARGV[i * 2])
  else
    totals[i] = tonumber(redis.call('GET', KEYS[i]) or '0')
  end
end
return totals
"""


@dataclass
class _SharedCounter:
    """One key's hits in its current and previous slot (a slot is one window long):
    every replica's as last read from Redis, and this replica's not yet sent."""

    window: int
    slot: int = 0
    shared: dict[int, int] = field(default_factory=dict)
    unsent: dict[int, int] = field(default_factory=dict)
    last_hit: float = 0.0

    def total(self, slot: int) -> int:
        return self.shared.get(slot, 0) + self.unsent.get(slot, 0)

    def move_to(self, slot: int) -> None:
        if slot != self.slot:
            self.slot = slot
            for held in (self.shared, self.unsent):
                for old in [held_slot for held_slot in held if held_slot < slot - 1]:
                    del held[old]


class SharedWindows:
    """Windows shared by every gateway replica through Redis, counted here and sent in
    the background: a request costs no round trip to Redis.

    A check asking Redis (the `limits` library: two script calls, one per window) cost
    ~0.4 ms of CPU per request in the gateway and ~0.1 ms in Redis, a third more than the
    whole request costs with per-process limits (ADR 0057). Here a
    hit is decided from the totals last read from Redis plus this replica's hits since,
    and every ``sync_s`` one script call adds this replica's new hits to each counter's
    slot and reads back every replica's. A window is estimated from two fixed slots (the
    previous one weighted by how much of it still lies inside the window), which for
    steady traffic is close to the moving window of memory://.

    Every sync reads the totals of the callers hit here since the last one and of up to
    ``refresh_per_sync`` others (all of them, unless this replica holds more callers than
    that within two of their windows), so the totals a decision uses are ``sync_s`` old,
    or a few syncs old on a replica with that many callers. What that gives up: a caller
    may get through, beyond its limit, what the other replicas let it through in that
    time, and once per window a caller new to this replica, up to what it admits in its
    first ``sync_s``. These limits keep a caller from flooding a service, not from
    guessing passwords: auth locks an account out on its own. With Redis out of
    reach, each replica goes on limiting with what it knows (its own hits), as memory://
    does; hits not sent are kept for the next sync while they still count.
    """

    def __init__(
        self,
        url: str,
        *,
        sync_s: float = 0.1,
        prefix: str = "smartgym:ratelimit:",
        refresh_per_sync: int = 1000,
        on_sync_failure: Callable[[], None] | None = None,
    ) -> None:
        # Timeouts, so a Redis that hangs delays the next sync, never a request.
        self._redis = Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
        self._sync = self._redis.register_script(_SYNC_SCRIPT)
        self._sync_s = sync_s
        self._prefix = prefix
        # Least recently read first (a key read is moved to the end).
        self._counters: dict[str, _SharedCounter] = {}
        self._touched: dict[str, None] = {}  # hit since the last sync, in order
        self._refresh_per_sync = refresh_per_sync
        self._next_sweep = -math.inf
        self._task: asyncio.Task[None] | None = None
        self._on_sync_failure = on_sync_failure
        self._warned_at = -math.inf

    def __len__(self) -> int:
        return len(self._counters)

    def hit(self, item: RateLimitItem, *identifiers: str, now: float | None = None) -> Verdict:
        # Wall-clock slots: every replica (on any machine) must cut them alike.
        now = time.time() if now is None else now
        key = item.key_for(*identifiers)
        window = int(item.get_expiry())
        counter = self._counters.get(key)
        if counter is None:
            counter = self._counters[key] = _SharedCounter(window)
        position = now / window
        slot = int(position)
        counter.move_to(slot)
        counter.last_hit = now
        self._touched[key] = None
        self._start_syncing()
        previous, current = counter.total(slot - 1), counter.total(slot)
        share_left = 1.0 - (position - slot)  # of the previous slot still inside the window
        if previous * share_left + current + 1 > item.amount:
            return Verdict(False, _retry_after(item.amount, previous, current, position, window))
        counter.unsent[slot] = counter.unsent.get(slot, 0) + 1
        return Verdict(True)

    def _start_syncing(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._keep_syncing(), name="rate-limit-sync")

    async def _keep_syncing(self) -> None:
        # Ends once every caller is forgotten: an idle gateway does not wake for Redis
        # (the next hit starts it again).
        while self._counters:
            await asyncio.sleep(self._sync_s)
            try:
                await self.sync()
            except Exception:  # a bug here must not end the sharing for good
                log.exception("rate-limit sync failed")

    async def sync(self, *, now: float | None = None) -> None:
        """Send the hits since the last sync and read back every replica's totals, in one
        script call: for the callers hit here since the last sync, and for up to
        ``refresh_per_sync`` others, least recently read first (all of them, unless this
        replica holds more callers than that)."""
        now = time.time() if now is None else now
        if now >= self._next_sweep:
            self._next_sweep = now + 1.0
            self._forget_idle(now)
        touched, self._touched = self._touched, {}
        keys = [key for key in touched if key in self._counters]
        for key in self._counters:
            if len(keys) >= len(touched) + self._refresh_per_sync:
                break
            if key not in touched:
                keys.append(key)
        slot_keys: list[str] = []
        arguments: list[int] = []
        sent: list[tuple[_SharedCounter, int, int]] = []
        for key in keys:
            counter = self._counters[key] = self._counters.pop(key)  # now the most recently read
            counter.move_to(int(now / counter.window))
            for slot in (counter.slot - 1, counter.slot):
                hits = counter.unsent.pop(slot, 0)
                slot_keys.append(f"{self._prefix}{key}:{slot}")
                # Kept for two windows: the next one still weighs this slot as its previous.
                arguments += [hits, 2 * counter.window + 1]
                sent.append((counter, slot, hits))
        if not sent:
            return
        try:
            totals = await self._sync(keys=slot_keys, args=arguments)
        except (RedisError, OSError) as exc:
            self._failed(exc, sent)
            self._touched = touched | self._touched
            return
        for (counter, slot, _), total in zip(sent, totals, strict=True):
            if slot >= counter.slot - 1:
                counter.shared[slot] = int(total)

    def _failed(self, exc: Exception, sent: list[tuple[_SharedCounter, int, int]]) -> None:
        for counter, slot, hits in sent:
            if hits and slot >= counter.slot - 1:  # still counts: send it with the next sync
                counter.unsent[slot] = counter.unsent.get(slot, 0) + hits
        if self._on_sync_failure is not None:
            self._on_sync_failure()
        if time.monotonic() - self._warned_at >= 30.0:
            self._warned_at = time.monotonic()
            log.warning("rate limits not shared (Redis: %s); each replica limits on its own meanwhile", exc)

    def _forget_idle(self, now: float) -> None:
        idle = [
            key
            for key, counter in self._counters.items()
            if now - counter.last_hit > 2 * counter.window and not counter.unsent
        ]
        for key in idle:
            del self._counters[key]

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(RedisError, OSError):
            await self.sync()  # what this replica admitted still counts for the others
        await self._redis.aclose()


def _retry_after(amount: int, previous: int, current: int, position: float, window: int) -> int:
    """Seconds until one more hit fits, if nobody hits meanwhile: the previous slot's
    weight falls as the window moves on, and the current slot becomes the previous."""
    slot = int(position)
    if current + 1 <= amount:
        fits_at = slot + (1.0 - (amount - 1 - current) / previous if previous else 0.0)
    else:
        fits_at = slot + 1 + (1.0 - (amount - 1) / current)
    return max(1, math.ceil((fits_at - position) * window))


class RateLimits:
    def __init__(
        self,
        storage_url: str,
        *,
        per_address: str,
        sync_s: float = 0.1,
        on_sync_failure: Callable[[], None] | None = None,
    ) -> None:
        # memory:// is per process; redis://… is shared by every replica. The "async+"
        # prefix of the `limits` library's URLs is accepted and means the same.
        bare = storage_url.removeprefix("async+")
        self._windows: MemoryWindows | SharedWindows = (
            MemoryWindows()
            if bare.startswith("memory://")
            else SharedWindows(bare, sync_s=sync_s, on_sync_failure=on_sync_failure)
        )
        self._per_address = parse(per_address)
        self._items: dict[str, RateLimitItem] = {}

    async def check(self, *, route: str, limit: str, principal: str | None, address: str | None) -> Verdict:
        """One hit against the address floor and the route's limit for this caller."""
        if address is not None:
            verdict = self._windows.hit(self._per_address, "address", address)
            if not verdict.allowed:
                return verdict
        key = f"principal:{principal}" if principal else f"address:{address}"
        return self._windows.hit(self._item(limit), route, key)

    async def aclose(self) -> None:
        if isinstance(self._windows, SharedWindows):
            await self._windows.aclose()

    def _item(self, limit: str) -> RateLimitItem:
        item = self._items.get(limit)
        if item is None:
            item = self._items[limit] = parse(limit)
        return item
