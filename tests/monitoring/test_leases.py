"""Shard leases against a real PostgreSQL: replicas share the shards fairly, a newcomer
gets its share from the others (who stop watching before they let go), a replica that
stops renewing loses its shards to the others within a ping period, and a replica that
cannot reach the database stops watching by its own clock before its leases expire."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from common.migrations import upgrade
from monitoring.shards import ShardLeases, shard_of
from tests.support.infra import PostgresDatabases

PERIOD_S = 1.0
SHARDS = 12


class Holder:
    def __init__(self, engine: AsyncEngine, name: str) -> None:
        self.watching: set[int] = set()
        self.orphaned: set[int] = set()  # gained from a holder whose lease ran out
        self.leases = ShardLeases(
            engine=engine,
            replica_id=name,
            shards=SHARDS,
            renew_s=PERIOD_S / 4,
            ttl_s=PERIOD_S * 0.6,
            on_gain=self.gain,
            on_lose=self.lose,
        )

    async def gain(self, shards: frozenset[int], orphaned: frozenset[int]) -> None:
        self.watching |= shards
        self.orphaned |= orphaned

    def lose(self, shards: frozenset[int]) -> None:
        self.watching -= shards


async def eventually(check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def no_overlap(*holders: Holder) -> bool:
    seen: set[int] = set()
    for holder in holders:
        if seen & holder.watching:
            return False
        seen |= holder.watching
    return True


async def test_leases_balance_hand_over_and_fence(postgres: PostgresDatabases) -> None:
    url = postgres.create("leases")
    upgrade("monitoring", url)
    engine = create_async_engine(url)
    a, b, c = Holder(engine, "a"), Holder(engine, "b"), Holder(engine, "c")
    try:
        await a.leases.start()
        assert a.watching == set(range(SHARDS))
        await b.leases.start()
        await c.leases.start()
        checks = 0
        deadline = time.monotonic() + 5 * PERIOD_S
        while sorted(len(h.watching) for h in (a, b, c)) != [4, 4, 4]:
            assert no_overlap(a, b, c)
            assert time.monotonic() < deadline, [sorted(h.watching) for h in (a, b, c)]
            checks += 1
            await asyncio.sleep(0.01)
        # Shards handed over (released, not expired) are not reported as orphaned.
        assert not (a.orphaned | b.orphaned | c.orphaned)
        assert a.leases.holds(f"branch-{next(n for n in range(999) if shard_of(f'branch-{n}', SHARDS) in a.watching)}")

        # c stops renewing, as after kill -9: a and b take its shards within a period.
        assert c.leases._task is not None
        c.leases._task.cancel()
        c_shards = set(c.watching)
        stopped = time.monotonic()
        await eventually(lambda: not c.watching, PERIOD_S)  # its own clock ran out first
        await eventually(lambda: c_shards <= a.watching | b.watching, 2 * PERIOD_S)
        assert time.monotonic() - stopped < PERIOD_S * 1.2
        assert no_overlap(a, b)
        assert a.watching | b.watching == set(range(SHARDS))
        # Taken from a holder that stopped renewing: reported as orphaned (their devices
        # are pinged at once), and nothing else is.
        assert a.orphaned | b.orphaned == c_shards

        # a cannot reach the database: it stops watching before b may take over.
        async def unreachable() -> None:
            raise OSError("database away")

        a.leases.tick = unreachable  # type: ignore[method-assign]
        a_shards = set(a.watching)
        await eventually(lambda: not a.watching, PERIOD_S)
        async with engine.connect() as connection:
            still_valid = (
                await connection.execute(
                    text("SELECT count(*) FROM shard_leases WHERE holder = 'a' AND expires_at > now()")
                )
            ).scalar()
        assert still_valid == len(a_shards)  # a let go by its own clock while the database still said "a"
        await eventually(lambda: b.watching == set(range(SHARDS)), 2 * PERIOD_S)
        assert a_shards <= b.orphaned
    finally:
        for holder in (a, b, c):
            await holder.leases.stop()
        await engine.dispose()
