"""Devices sharded over monitoring replicas by branch, each shard held through a lease.

A device needs exactly one watcher: two would announce its fault twice, none would
miss it. Branches map to a fixed number of shards (``crc32(branch) % shards``, more
shards than replicas ever run); a replica watches the branches of the shards it holds
a lease on, in monitoring's own database:

- every ``renew_s`` (a tenth of the ping period) a replica renews its leases and its
  own liveness row, with a time to live in *database* time, and takes free or expired
  leases (``FOR UPDATE SKIP LOCKED``) up to its fair share, ``ceil(shards / live
  replicas)``; a replica above its share stops watching the extra shards *before* it
  releases them;
- a replica that cannot renew stops watching at five sixths of the TTL by its own
  clock, counted from before the renewal was sent — before the database's expiry, with
  room for a late timer — so a shard is not watched twice even while the database is away;
- a dead replica's leases expire after the TTL (0.7 of the ping period), and the others
  take them at their next renewal: the shard is taken over within one ping period. The
  taker is told which shards it took from an expired holder (``on_gain``'s second
  argument), so it pings their devices at once instead of at their phase on its grid.

Observations can reach a replica that does not hold the device (a heartbeat connection
lands on any replica behind the load balancer; an API call or an event on any of them):
they are relayed to every replica with PostgreSQL ``NOTIFY`` on one channel, and the
holder applies them (see :class:`Relay`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger(__name__)

#: How early a timer may fire by time.monotonic() (uvloop rounds to whole milliseconds).
EARLY_TIMER_S = 0.003

CHANNEL = "monitoring_relay"
MAX_PAYLOAD = 7900  # PostgreSQL refuses NOTIFY payloads of 8000 bytes and more

_BEAT_AND_RENEW = text(
    "WITH beat AS ("
    "  INSERT INTO replicas (replica_id, expires_at)"
    "  VALUES (:me, now() + make_interval(secs => :ttl))"
    "  ON CONFLICT (replica_id) DO UPDATE SET expires_at = EXCLUDED.expires_at"
    "  RETURNING replica_id"
    "), stale AS ("
    "  DELETE FROM replicas WHERE expires_at < now() - interval '10 minutes' AND replica_id <> :me"
    "  RETURNING replica_id"
    "), renewed AS ("
    "  UPDATE shard_leases SET expires_at = now() + make_interval(secs => :ttl)"
    "  WHERE holder = :me AND expires_at > now() RETURNING shard"
    ")"
    " SELECT"
    "  (SELECT count(*) FROM replicas WHERE expires_at > now() AND replica_id <> :me)"
    "   + (SELECT count(*) FROM beat) AS live,"
    "  (SELECT coalesce(array_agg(shard), '{}') FROM renewed) AS renewed,"
    "  (SELECT count(*) FROM stale) AS stale"
)
_TAKE_FREE = text(
    "WITH free AS ("
    "  SELECT shard, holder FROM shard_leases WHERE holder IS NULL OR expires_at <= now()"
    "  ORDER BY shard LIMIT :wanted FOR UPDATE SKIP LOCKED"
    ")"
    " UPDATE shard_leases SET holder = :me, expires_at = now() + make_interval(secs => :ttl)"
    " FROM free WHERE shard_leases.shard = free.shard"
    " RETURNING shard_leases.shard, coalesce(free.holder <> :me, false) AS orphaned"
)


def shard_of(branch_id: str, shards: int) -> int:
    return zlib.crc32(branch_id.encode()) % shards


class ShardLeases:
    def __init__(
        self,
        *,
        engine: AsyncEngine,
        replica_id: str,
        shards: int,
        renew_s: float,
        ttl_s: float,
        on_gain: Callable[[frozenset[int], frozenset[int]], Awaitable[None]],
        on_lose: Callable[[frozenset[int]], None],
    ) -> None:
        if ttl_s <= renew_s:
            raise ValueError("a lease must outlive at least one renewal")
        self._engine = engine
        self.engine = engine
        self.replica_id = replica_id
        self.shards = shards
        self._renew_s = renew_s
        self._ttl_s = ttl_s
        self._on_gain = on_gain
        self._on_lose = on_lose
        self.held: frozenset[int] = frozenset()
        self._deadline = 0.0  # monotonic: held leases count until then
        self._task: asyncio.Task[None] | None = None
        self._watchdog: asyncio.TimerHandle | None = None
        self._loads: set[asyncio.Task[None]] = set()
        self.renewals = 0

    def holds(self, branch_id: str) -> bool:
        return shard_of(branch_id, self.shards) in self.held

    async def start(self) -> None:
        await self._ensure_rows()
        await self.tick()
        if self._loads:
            await asyncio.gather(*self._loads, return_exceptions=True)
        self._task = asyncio.create_task(self._run(), name="monitoring-leases")

    async def stop(self) -> None:
        """Stop watching, then let go of every lease at once (the others take them at
        their next renewal instead of waiting for the TTL)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for load in list(self._loads):
            load.cancel()
        await asyncio.gather(*self._loads, return_exceptions=True)
        self._drop_all()
        with contextlib.suppress(Exception):
            async with self._engine.begin() as connection:
                await connection.execute(
                    text("UPDATE shard_leases SET holder = NULL, expires_at = now() WHERE holder = :me"),
                    {"me": self.replica_id},
                )
                await connection.execute(text("DELETE FROM replicas WHERE replica_id = :me"), {"me": self.replica_id})

    async def _ensure_rows(self) -> None:
        async with self._engine.begin() as connection:
            await connection.execute(
                text(
                    "INSERT INTO shard_leases (shard, holder, expires_at)"
                    " SELECT s, NULL, now() FROM generate_series(0, :last) AS s ON CONFLICT (shard) DO NOTHING"
                ),
                {"last": self.shards - 1},
            )

    async def _run(self) -> None:
        # A fixed cadence (not a pause after each renewal): a slow renewal must not push
        # the next one past the lease's end.
        next_at = time.monotonic()
        while True:
            next_at += self._renew_s
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            next_at = max(next_at, time.monotonic() - self._renew_s)
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                # The watchdog drops the shards when the leases run out by our clock.
                log.warning("could not renew shard leases", exc_info=True)

    async def tick(self) -> None:
        sent = time.monotonic()
        share, renewed, taken, orphaned = await self._renew()
        self.renewals += 1
        took = time.monotonic() - sent
        if took > self._renew_s:
            log.warning("shard lease renewal took %.2f s", took)
        # A lease renewed here but dropped locally (our clock ran out first) is simply
        # taken again: the database still said it was ours.
        now_held = renewed | taken
        lost = set(self.held) - now_held
        if lost:
            self._lose(frozenset(lost))
        # A sixth of the TTL short of the database's expiry: room for a late watchdog on
        # a busy event loop and for clocks that tick at slightly different rates.
        self._deadline = sent + self._ttl_s * 5 / 6
        self._arm_watchdog()
        extra = frozenset(sorted(now_held)[share:]) if len(now_held) > share else frozenset()
        if extra:
            # Above our share (a replica joined): stop watching first, then let go.
            self._lose(extra & self.held)
            now_held -= extra
            await self._release(extra)
        gained = frozenset(now_held - set(self.held))
        if gained:
            self._start_loading(gained, orphaned)

    async def _renew(self) -> tuple[int, set[int], set[int], set[int]]:
        """Our share, the leases renewed, those taken, and those of them taken from an
        expired holder."""
        ttl = {"me": self.replica_id, "ttl": self._ttl_s}
        # Two statements, each its own transaction, instead of a transaction of seven: every
        # round trip to the database costs the renewal a turn of the event loop, and at
        # start-up (thousands of heartbeat hellos and registrations) a turn took ~1 s, so
        # the seven-statement renewal of every replica ran past the watchdog and all three
        # dropped their shards at once. The first statement beats, counts the live
        # replicas and renews the leases still ours and unexpired (one expired may be
        # someone else's by now); the second, only when below our share, takes free or
        # expired ones. Neither needs the other's transaction: each row change is atomic,
        # and SKIP LOCKED keeps two replicas from taking the same lease.
        async with self._engine.connect() as connection:
            connection = await connection.execution_options(isolation_level="AUTOCOMMIT")
            row = (await connection.execute(_BEAT_AND_RENEW, ttl)).one()
            share = math.ceil(self.shards / max(1, int(row.live or 1)))
            renewed = {int(shard) for shard in row.renewed}
            taken: set[int] = set()
            # Taken from another holder whose lease ran out (not released): its devices have
            # gone unpinged since before it expired.
            orphaned: set[int] = set()
            if len(renewed) < share:
                for found in await connection.execute(_TAKE_FREE, {**ttl, "wanted": share - len(renewed)}):
                    taken.add(int(found[0]))
                    if found[1]:
                        orphaned.add(int(found[0]))
        return share, renewed, taken, orphaned

    async def _release(self, shards: frozenset[int]) -> None:
        async with self._engine.begin() as connection:
            await connection.execute(
                text(
                    "UPDATE shard_leases SET holder = NULL, expires_at = now()"
                    " WHERE holder = :me AND shard = ANY(:shards)"
                ),
                {"me": self.replica_id, "shards": sorted(shards)},
            )

    def _start_loading(self, gained: frozenset[int], orphaned: set[int]) -> None:
        self.held = self.held | gained
        # Loading the devices of the new shards runs beside the renewals: a renewal
        # that waited for a large load could let every lease run out.
        # Not at start-up (the first renewal): leases left by a cluster that went down
        # together would otherwise hurry every device at once. Nor shards this replica
        # had dropped by its own clock: that happens when its loop is starved, and a
        # burst of pings then would starve it further (measured: start-up run-outs).
        hurry = frozenset() if self._task is None else gained & frozenset(orphaned)
        task = asyncio.create_task(self._gain(gained, hurry), name="monitoring-shards-gained")
        self._loads.add(task)
        task.add_done_callback(self._loads.discard)

    async def _gain(self, shards: frozenset[int], orphaned: frozenset[int]) -> None:
        try:
            await self._on_gain(shards, orphaned)
        except Exception:
            # Held but not watched would be worse than not held: count them as not ours,
            # so the next renewal (which still finds the leases ours) loads them again.
            log.warning("could not load the devices of shards %s", sorted(shards), exc_info=True)
            self._lose(shards)

    def _lose(self, shards: frozenset[int]) -> None:
        shards = shards & self.held
        if not shards:
            return
        self.held = self.held - shards
        self._on_lose(shards)

    def _drop_all(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        self._lose(self.held)

    def _arm_watchdog(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
        loop = asyncio.get_running_loop()
        delay = self._deadline - time.monotonic()
        self._watchdog = loop.call_later(max(0.0, delay), self._expired)

    def _expired(self) -> None:
        self._watchdog = None
        if not self.held:
            return
        if time.monotonic() < self._deadline - EARLY_TIMER_S:
            # A timer may fire a little before its deadline by this clock (uvloop counts
            # in whole milliseconds): armed again, not forgotten, or a replica that cannot
            # renew would go on watching. Within the tolerance the leases are let go
            # (early is the safe side) rather than re-armed every turn of the loop.
            self._arm_watchdog()
            return
        log.warning("shard leases ran out without renewal; no longer watching shards %s", sorted(self.held))
        self._lose(self.held)


class Relay:
    """Observations for devices another replica watches, passed on with ``NOTIFY``.

    One channel for every replica: each applies what concerns a device it holds and drops
    the rest, so a relay never has to know who holds what (which changes during a
    takeover)."""

    def __init__(self, *, dsn: str, replica_id: str, on_message: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        self._dsn = dsn
        self.replica_id = replica_id
        self._on_message = on_message
        self._outbox: asyncio.Queue[str] = asyncio.Queue(maxsize=100_000)
        self._tasks: list[asyncio.Task[None]] = []
        self.listening = asyncio.Event()
        self.dropped = 0

    def send(self, message: dict[str, Any]) -> None:
        payload = json.dumps({**message, "from": self.replica_id}, separators=(",", ":"))
        if len(payload) > MAX_PAYLOAD:
            self.dropped += 1
            return
        try:
            self._outbox.put_nowait(payload)
        except asyncio.QueueFull:
            self.dropped += 1

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._listen(), name="monitoring-relay-listen"),
            asyncio.create_task(self._send(), name="monitoring-relay-send"),
        ]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.listening.wait(), 10.0)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _listen(self) -> None:
        import psycopg

        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self._dsn, autocommit=True) as connection:
                    await connection.execute(f"LISTEN {CHANNEL}")
                    self.listening.set()
                    async for notice in connection.notifies():
                        try:
                            message = json.loads(notice.payload)
                        except ValueError:
                            continue
                        if message.get("from") == self.replica_id:
                            continue
                        try:
                            await self._on_message(message)
                        except Exception:
                            log.exception("relayed observation failed")
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("relay listener lost its connection; reconnecting", exc_info=True)
                await asyncio.sleep(1.0)

    async def _send(self) -> None:
        import psycopg

        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self._dsn, autocommit=True) as connection:
                    while True:
                        batch = [await self._outbox.get()]
                        while not self._outbox.empty() and len(batch) < 200:
                            batch.append(self._outbox.get_nowait())
                        # One statement (one round trip, one transaction, in order) for the
                        # batch: a round trip per message cost a turn of the event loop each,
                        # and at start-up (a relay per heartbeat hello) the relay fell behind.
                        await connection.execute(
                            "SELECT pg_notify(%s, payload) FROM unnest(%s::text[]) AS payload",
                            (CHANNEL, batch),
                        )
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("relay sender lost its connection; reconnecting", exc_info=True)
                await asyncio.sleep(1.0)
