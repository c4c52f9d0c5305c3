"""Rate limits shared by gateway replicas through a real Redis: counted in each replica,
exchanged by a sync, and kept working (each replica on its own) while Redis is away."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from limits import parse
from pydantic import ValidationError
from redis.asyncio import Redis

from gateway.ratelimit import SharedWindows
from gateway.settings import GatewaySettings
from tests.support.faultproxy import FaultProxy
from tests.support.infra import require

REDIS_URL = "redis://127.0.0.1:6379/0"
NEVER_BY_ITSELF = 3600.0  # the tests call sync() themselves


@dataclass
class BehindAProxy:
    """A replica whose Redis is reached through a fault proxy, and what it reported."""

    proxy: FaultProxy
    windows: SharedWindows
    prefix: str
    failures: list[int] = field(default_factory=list)


@contextlib.asynccontextmanager
async def behind_a_proxy(*, sync_s: float = NEVER_BY_ITSELF) -> AsyncIterator[BehindAProxy]:
    require("Redis", REDIS_URL, 6379)
    proxy = FaultProxy(6379)
    await proxy.start()
    prefix = f"test:ratelimit:{uuid.uuid4().hex[:8]}:"
    failures: list[int] = []
    windows = SharedWindows(
        f"redis://127.0.0.1:{proxy.port}/0", sync_s=sync_s, prefix=prefix, on_sync_failure=lambda: failures.append(1)
    )
    try:
        yield BehindAProxy(proxy, windows, prefix, failures)
    finally:
        proxy.blackhole(False)
        proxy.refuse(False)
        proxy.delay_s = 0.0
        await windows.aclose()
        await proxy.stop()


@pytest.fixture
async def replicas() -> AsyncIterator[tuple[SharedWindows, SharedWindows]]:
    require("Redis", REDIS_URL, 6379)
    prefix = f"test:ratelimit:{uuid.uuid4().hex[:8]}:"
    first = SharedWindows(REDIS_URL, sync_s=NEVER_BY_ITSELF, prefix=prefix)
    second = SharedWindows(REDIS_URL, sync_s=NEVER_BY_ITSELF, prefix=prefix)
    yield first, second
    await first.aclose()
    await second.aclose()


async def test_two_replicas_share_a_callers_limit_from_the_next_sync(replicas):
    first, second = replicas
    item = parse("6/minute")
    now = 60_000.0 * 60 + 1.0
    assert [first.hit(item, "svc", "ann", now=now).allowed for _ in range(4)] == [True] * 4
    await first.sync(now=now)
    # New to the second replica: decided on what it knows until its next sync (the
    # bounded overshoot of ADR 0057).
    assert second.hit(item, "svc", "ann", now=now).allowed
    await second.sync(now=now)  # sends its 1 and reads the 5 now in Redis
    assert [second.hit(item, "svc", "ann", now=now).allowed for _ in range(2)] == [True, False]
    await second.sync(now=now)
    await first.sync(now=now)  # reads every caller it holds, hit since or not
    assert not first.hit(item, "svc", "ann", now=now).allowed
    assert first.hit(item, "svc", "bob", now=now).allowed  # another caller is unaffected


async def test_the_previous_slot_weighs_by_how_much_of_it_is_still_inside_the_window(replicas):
    first, _ = replicas
    item = parse("10/minute")
    start = 60_000.0 * 60
    assert all(first.hit(item, "svc", "ann", now=start + 30).allowed for _ in range(10))
    refused = first.hit(item, "svc", "ann", now=start + 31)
    assert not refused.allowed
    # 10 in this slot: one more fits once the slot is the previous one and a tenth of it
    # has left the window, 6 s into the next slot (35 s from now).
    assert refused.retry_after_s == 35
    await first.sync(now=start + 31)
    halfway = start + 90  # half of the previous slot still counts: 5 of its 10
    assert [first.hit(item, "svc", "ann", now=halfway).allowed for _ in range(6)] == [True] * 5 + [False]


async def test_with_redis_away_each_replica_limits_on_its_own_and_loses_no_hits():
    async with behind_a_proxy() as cut_off:
        other = SharedWindows(REDIS_URL, sync_s=NEVER_BY_ITSELF, prefix=cut_off.prefix)
        item = parse("5/minute")
        now = 60_000.0 * 60 + 1.0
        try:
            cut_off.proxy.refuse(True)
            hits = [cut_off.windows.hit(item, "svc", "ann", now=now).allowed for _ in range(6)]
            assert hits == [True] * 5 + [False]
            await cut_off.windows.sync(now=now)  # Redis out of reach: no exception, a failure counted
            assert cut_off.failures == [1]
            cut_off.proxy.refuse(False)
            await cut_off.windows.sync(now=now)  # the 5 kept hits go now
            assert cut_off.failures == [1]
            other.hit(item, "svc", "ann", now=now)
            await other.sync(now=now)
            assert not other.hit(item, "svc", "ann", now=now).allowed
        finally:
            await other.aclose()


async def test_callers_that_fell_idle_are_forgotten(replicas):
    first, _ = replicas
    per_second, per_minute = parse("100/second"), parse("3/minute")
    now = 60_000.0 * 60
    for n in range(200):
        first.hit(per_second, "svc", f"visitor-{n}", now=now)
    first.hit(per_minute, "svc", "regular", now=now)
    await first.sync(now=now)
    assert len(first) == 201
    await first.sync(now=now + 5)  # two seconds-windows later: the visitors are gone
    assert len(first) == 1
    await first.sync(now=now + 200)
    assert len(first) == 0


async def test_a_sync_reads_a_bounded_number_of_callers_near_their_limit_in_turn():
    require("Redis", REDIS_URL, 6379)
    prefix = f"test:ratelimit:{uuid.uuid4().hex[:8]}:"
    first = SharedWindows(REDIS_URL, sync_s=NEVER_BY_ITSELF, prefix=prefix, refresh_per_sync=2)
    second = SharedWindows(REDIS_URL, sync_s=NEVER_BY_ITSELF, prefix=prefix)
    near, far = parse("2/minute"), parse("10/minute")
    now = 60_000.0 * 60 + 1.0
    callers = [f"caller-{n}" for n in range(5)]
    try:
        for caller in callers:
            first.hit(near, "svc", caller, now=now)  # at half their limit here
        first.hit(far, "svc", "far", now=now)  # far below its limit here
        await first.sync(now=now)  # every caller just hit: all read, whatever the bound
        for caller in callers:
            second.hit(near, "svc", caller, now=now)
        for _ in range(9):
            second.hit(far, "svc", "far", now=now)
        await second.sync(now=now)  # every caller is at its limit now
        await first.sync(now=now)  # nobody hit here since: two near their limit are read
        assert [first.hit(near, "svc", caller, now=now).allowed for caller in callers[:3]] == [False, False, True]
        await first.sync(now=now)  # caller-2 (just hit) and the next two in turn
        assert [first.hit(near, "svc", caller, now=now).allowed for caller in callers[2:]] == [False, False, False]
        # Far below its limit here, "far" was not read: one more gets through (the
        # documented bound), and none after the sync its hit brings.
        assert first.hit(far, "svc", "far", now=now).allowed
        await first.sync(now=now)
        assert not first.hit(far, "svc", "far", now=now).allowed
    finally:
        await first.aclose()
        await second.aclose()


async def test_hits_taken_while_redis_does_not_answer_still_count():
    async with behind_a_proxy(sync_s=0.05) as replica:
        item = parse("5/hour")
        replica.proxy.blackhole(True)  # every sync waits for its answer, then times out
        admitted = 0
        for _ in range(40):
            admitted += replica.windows.hit(item, "svc", "ann").allowed
            await asyncio.sleep(0.02)
        assert admitted == 5


async def test_a_sync_whose_answer_was_lost_is_not_counted_twice():
    async with behind_a_proxy() as replica:
        direct = Redis.from_url(REDIS_URL)
        item = parse("100/hour")
        now = time.time()
        try:
            for _ in range(3):
                replica.windows.hit(item, "svc", "ann", now=now)
            replica.proxy.delay_s = 2.5  # Redis runs the script after the client has given up on it
            await replica.windows.sync(now=now)
            assert replica.failures == [1]
            await asyncio.sleep(3.0)
            replica.proxy.delay_s = 0.0
            await replica.windows.sync(now=now)  # the same hits again
            slot_key = f"{replica.prefix}{item.key_for('svc', 'ann')}:{int(now / 3600)}"
            assert int(await direct.hget(slot_key, "total")) == 3
        finally:
            await direct.aclose()


@pytest.mark.parametrize("url", ["memcached://cache:11211", "redis+cluster://r:6379", "redis://", "memory:// "])
def test_an_unknown_storage_is_refused_at_start(url):
    with pytest.raises(ValidationError, match="rate-limit storage"):
        GatewaySettings(gateway_rate_limit_storage=url)


@pytest.mark.parametrize("url", ["memory://", "redis://:secret@redis:6379/0", "async+redis://127.0.0.1:6379"])
def test_known_storages_are_taken(url):
    assert GatewaySettings(gateway_rate_limit_storage=url).gateway_rate_limit_storage == url
