"""Rate limits per principal (or client address) and route: moving windows in this
process, or windows shared by every gateway replica through Redis (ADR 0057)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import time
import uuid
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


# Records this replica's hits in each slot and reads every slot's total back, in one
# round trip for a batch of slots. A slot is a hash: a field per replica holding the hits
# it has sent for that slot so far, and their sum in "total". A replica sends its running
# count, not an increment, so a batch sent again (its answer lost to a timeout) adds
# nothing twice. KEYS: slot keys; ARGV: the replica, then per key its running count
# (-1: only read) and the slot's expiry in seconds.
_SYNC_SCRIPT = """
local replica = ARGV[1]
local totals = {}
for i = 1, #KEYS do
  local mine = tonumber(ARGV[i * 2])
  if mine > 0 then
    local before = tonumber(redis.call('HGET', KEYS[i], replica) or '0')
    if mine > before then
      redis.call('HSET', KEYS[i], replica, mine)
      redis.call('HINCRBY', KEYS[i], 'total', mine - before)
      redis.call('EXPIRE', KEYS[i], ARGV[i * 2 + 1])
    end
  end
  totals[i] = tonumber(redis.call('HGET', KEYS[i], 'total') or '0')
end
return totals
"""


@dataclass
class _SharedCounter:
    """One key's hits in its current and previous slot (a slot is one window long): every
    replica's as last read from Redis (``shared``), this replica's that Redis has
    (``sent``), and this replica's since (``unsent``)."""

    window: int
    amount: int
    slot: int = 0
    shared: dict[int, int] = field(default_factory=dict)
    sent: dict[int, int] = field(default_factory=dict)
    unsent: dict[int, int] = field(default_factory=dict)
    final_read: int | None = None  # a slot whose total was read after every replica had sent it
    last_hit: float = 0.0

    def total(self, slot: int) -> int:
        return self.shared.get(slot, 0) + self.unsent.get(slot, 0)

    def estimate(self, position: float) -> float:
        """Hits in the window ending at ``position`` (in windows): the current slot's, and
        the previous slot's weighted by how much of it is still inside the window."""
        slot = int(position)
        return self.total(slot - 1) * (1.0 - (position - slot)) + self.total(slot)

    def move_to(self, slot: int) -> None:
        if slot != self.slot:
            self.slot = slot
            for held in (self.shared, self.sent, self.unsent):
                for old in [held_slot for held_slot in held if held_slot < slot - 1]:
                    del held[old]


class SharedWindows:
    """Windows shared by every gateway replica through Redis, counted here and sent in
    the background: a request costs no round trip to Redis.

    A check asking Redis (the `limits` library: two script calls, one per window) cost
    ~0.4 ms of CPU per request in the gateway and ~0.1 ms in Redis, a third more than the
    whole request costs with per-process limits (ADR 0057). Here a hit is decided from
    the totals last read from Redis plus this replica's hits since; every ``sync_s`` a
    script call per batch of callers records this replica's hits and reads back every
    replica's. A window is estimated from two fixed slots, the previous one weighted by
    how much of it is still inside the window: for steady traffic that is close to the
    moving window of memory://; a limit of a handful per window (1/minute) admits up to
    half as many as memory:// right after a window in which it was reached.

    A sync reads the callers hit here since the last one, and looks at up to
    ``refresh_per_sync`` others in turn, reading those at half their limit or more here.
    What that gives up: a caller may get through, beyond its limit, what the other
    replicas let it through since this replica last read it; for a caller new to this
    replica in a window, or far below its limit here, that is up to what this replica
    admits in one ``sync_s``. These limits keep a caller from flooding a service, not from
    guessing passwords: auth locks an account out on its own. With Redis out of reach,
    each replica goes on limiting with what it knows (its own hits), as memory:// does;
    its hits stay counted and are sent when Redis is back.
    """

    def __init__(
        self,
        url: str,
        *,
        sync_s: float = 0.1,
        prefix: str = "smartgym:ratelimit:",
        refresh_per_sync: int = 1000,
        keys_per_call: int = 500,
        on_sync_failure: Callable[[], None] | None = None,
    ) -> None:
        # Timeouts, so a Redis that hangs delays the next sync, never a request.
        self._redis = Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
        self._sync = self._redis.register_script(_SYNC_SCRIPT)
        self._replica = uuid.uuid4().hex
        self._sync_s = sync_s
        self._prefix = prefix
        self._refresh_per_sync = refresh_per_sync
        self._keys_per_call = keys_per_call
        # Least recently read first (a key read is moved to the end).
        self._counters: dict[str, _SharedCounter] = {}
        self._touched: dict[str, None] = {}  # hit since the last sync, in order
        self._next_sweep = -math.inf
        self._task: asyncio.Task[None] | None = None
        self._closing = asyncio.Event()
        self._on_sync_failure = on_sync_failure
        self._complained_at = -math.inf

    def __len__(self) -> int:
        return len(self._counters)

    def hit(self, item: RateLimitItem, *identifiers: str, now: float | None = None) -> Verdict:
        # Wall-clock slots: every replica (on any machine) must cut them alike.
        now = time.time() if now is None else now
        key = item.key_for(*identifiers)
        counter = self._counters.get(key)
        if counter is None:
            counter = self._counters[key] = _SharedCounter(int(item.get_expiry()), item.amount)
        position = now / counter.window
        slot = int(position)
        counter.move_to(slot)
        counter.last_hit = now
        self._touched[key] = None
        self._start_syncing()
        if counter.estimate(position) + 1 > item.amount:
            previous, current = counter.total(slot - 1), counter.total(slot)
            return Verdict(False, _retry_after(item.amount, previous, current, position, counter.window))
        counter.unsent[slot] = counter.unsent.get(slot, 0) + 1
        return Verdict(True)

    def _start_syncing(self) -> None:
        if (self._task is None or self._task.done()) and not self._closing.is_set():
            self._task = asyncio.get_running_loop().create_task(self._keep_syncing(), name="rate-limit-sync")

    async def _keep_syncing(self) -> None:
        # Ends once every caller is forgotten (an idle gateway does not wake for Redis;
        # the next hit starts it again), or at close, after the sync under way.
        while self._counters:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._sync_s):
                    await self._closing.wait()
            if self._closing.is_set():
                return
            try:
                await self.sync()
            except Exception:  # a bug here must not end the sharing for good
                self._complain("rate-limit sync failed", exc_info=True)

    async def sync(self, *, now: float | None = None) -> None:
        """Record this replica's hits in Redis and read back every replica's totals: for
        the callers hit here since the last sync, and for those at half their limit or
        more among the ``refresh_per_sync`` others looked at longest ago."""
        now = time.time() if now is None else now
        if now >= self._next_sweep:
            self._next_sweep = now + 1.0
            self._forget_idle(now)
        touched, self._touched = self._touched, {}
        keys = [key for key in touched if key in self._counters]
        # The others in turn, a bounded number a sync (a flood of callers must not make
        # every sync walk all of them): each looked at goes to the end.
        looked_at = 0
        for key in list(itertools.islice(self._counters, self._refresh_per_sync + len(touched))):
            if key in touched:
                continue
            if looked_at == self._refresh_per_sync:
                break
            looked_at += 1
            counter = self._counters[key] = self._counters.pop(key)
            if counter.unsent or counter.estimate(now / counter.window) * 2 >= counter.amount:
                keys.append(key)
        for start in range(0, len(keys), self._keys_per_call):
            # In batches: a flood of callers must not become one script that holds Redis,
            # nor one stretch of this loop without a turn for requests.
            await self._sync_batch(keys[start : start + self._keys_per_call], now)

    async def _sync_batch(self, keys: list[str], now: float) -> None:
        slot_keys: list[str] = []
        arguments: list[str | int] = [self._replica]
        read: list[tuple[_SharedCounter, int, int]] = []  # counter, slot, running count sent
        for key in keys:
            counter = self._counters.get(key)
            if counter is None:
                continue
            self._counters[key] = self._counters.pop(key)  # now the most recently read
            slot = int(now / counter.window)
            counter.move_to(slot)
            # The previous slot until it has been read once after every replica sent it.
            settled = now - slot * counter.window >= 3 * self._sync_s
            slots = (slot,) if counter.final_read == slot - 1 else (slot - 1, slot)
            for each in slots:
                unsent = counter.unsent.get(each, 0)
                running = counter.sent.get(each, 0) + unsent if unsent else -1
                slot_keys.append(f"{self._prefix}{key}:{each}")
                # Kept for two windows: the next one still weighs this slot as its previous.
                arguments += [running, 2 * counter.window + 1]
                read.append((counter, each, running))
            if settled and len(slots) == 2:
                counter.final_read = slot - 1
        if not read:
            return
        try:
            totals = await self._sync(keys=slot_keys, args=arguments)
        except (RedisError, OSError) as exc:
            # Nothing to put back: the hits stay counted here and go with the next sync.
            for counter, _, _ in read:
                counter.final_read = None
            self._touched.update(dict.fromkeys(keys))
            if self._on_sync_failure is not None:
                self._on_sync_failure()
            self._complain(f"rate limits not shared (Redis: {exc}); each replica limits on its own meanwhile")
            return
        for (counter, slot, running), total in zip(read, totals, strict=True):
            if slot < counter.slot - 1:
                continue  # its window has passed while the answer came
            if running > 0:
                # Hits taken while the call was under way stay unsent.
                left = running - counter.sent.get(slot, 0)
                counter.sent[slot] = running
                remaining = counter.unsent.get(slot, 0) - left
                if remaining > 0:
                    counter.unsent[slot] = remaining
                else:
                    counter.unsent.pop(slot, None)
            counter.shared[slot] = int(total)

    def _complain(self, message: str, *, exc_info: bool = False) -> None:
        if time.monotonic() - self._complained_at >= 30.0:
            self._complained_at = time.monotonic()
            log.warning(message, exc_info=exc_info)

    def _forget_idle(self, now: float) -> None:
        idle = [
            key
            for key, counter in self._counters.items()
            if now - counter.last_hit > 2 * counter.window and not counter.unsent
        ]
        for key in idle:
            del self._counters[key]

    async def aclose(self) -> None:
        self._closing.set()
        if self._task is not None:
            await self._task  # the sync under way finishes (its timeout bounds it)
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
