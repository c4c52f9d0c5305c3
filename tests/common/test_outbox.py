"""The outbox against real PostgreSQL and RabbitMQ: atomic writes, relaying through
connection cuts, broker restarts and a relay killed with SIGKILL."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import pytest
from sqlalchemy import func, select

from common.db import Database
from common.events.outbox import OutboxRelay, UnitOfWork
from common.events.rabbitmq import RabbitMQBus
from common.observability import Metrics
from tests.support.faultproxy import FaultProxy
from tests.support.infra import restart_broker_app
from tests.support.ledger import (
    CATALOG,
    EFFECTS,
    TABLES,
    EntryRecorded,
    consumer_subscriptions,
    create_schema,
    effect_counts,
)
from tests.support.waiting import eventually

pytestmark = pytest.mark.usefixtures("broker_cleanup")


async def produce(database: Database, start: int, count: int, per_transaction: int = 100) -> None:
    """Business transactions that each record effects-to-be as outbox rows."""
    for first in range(start, start + count, per_transaction):
        async with UnitOfWork(database, TABLES, on_commit=lambda: None) as uow:
            for seq in range(first, min(first + per_transaction, start + count)):
                uow.emit(EntryRecorded(seq=seq))


async def unpublished(database: Database) -> int:
    async with database.sessions() as session:
        count = await session.scalar(
            select(func.count()).select_from(TABLES.outbox).where(TABLES.outbox.c.published_at.is_(None))
        )
    return int(count or 0)


async def test_rolled_back_transaction_leaves_no_event(postgres):
    url = postgres.create("producer")
    create_schema(url)
    database = Database(url)

    async def failing_business_transaction() -> None:
        async with UnitOfWork(database, TABLES, on_commit=lambda: None) as uow:
            await uow.session.execute(EFFECTS.insert().values(event_id=EntryRecorded(seq=0).event_id, seq=0))
            uow.emit(EntryRecorded(seq=1))
            raise RuntimeError("business rule broken after the event was emitted")

    with pytest.raises(RuntimeError):
        await failing_business_transaction()
    async with database.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(TABLES.outbox)) == 0
        assert await session.scalar(select(func.count()).select_from(EFFECTS)) == 0
    await database.dispose()


async def test_after_commit_callbacks_run_after_a_commit_and_never_after_a_rollback(postgres):
    url = postgres.create("producer")
    create_schema(url)
    database = Database(url)
    calls: list[str] = []
    async with UnitOfWork(database, TABLES, on_commit=lambda: None) as uow:
        uow.after_commit(lambda: calls.append("committed"))
        assert calls == []  # not before the commit

    async def broken() -> None:
        async with UnitOfWork(database, TABLES, on_commit=lambda: None) as uow:
            uow.after_commit(lambda: calls.append("rolled back"))
            raise RuntimeError("business rule broken")

    with pytest.raises(RuntimeError):
        await broken()
    assert calls == ["committed"]
    await database.dispose()


async def test_relay_delivers_everything_through_connection_cuts(rabbitmq_url, namespace, postgres):
    producer_url, consumer_url = postgres.create("producer"), postgres.create("consumer")
    create_schema(producer_url)
    create_schema(consumer_url)
    producer, consumer = Database(producer_url), Database(consumer_url)
    proxy = FaultProxy(target_port=5672)
    await proxy.start()
    metrics = Metrics()
    relay_bus = RabbitMQBus(
        f"amqp://guest:guest@127.0.0.1:{proxy.port}/?reconnect_interval=0.2",
        catalog=CATALOG,
        metrics=metrics,
        namespace=namespace,
        confirm_timeout_s=2.0,
    )
    consumer_bus = RabbitMQBus(rabbitmq_url, catalog=CATALOG, metrics=metrics, namespace=namespace)
    await consumer_bus.start()
    await consumer_bus.subscribe(consumer_subscriptions("ledger", consumer, metrics))
    await relay_bus.start()
    relay = OutboxRelay(
        service="ledger",
        database=producer,
        tables=TABLES,
        bus=relay_bus,
        metrics=metrics,
        batch_size=100,
        poll_interval_s=0.05,
        max_backoff_s=0.5,
    )
    relay.start()
    try:
        total = 3000
        producing = asyncio.create_task(produce(producer, 0, total, per_transaction=50))
        for _ in range(3):
            await asyncio.sleep(0.4)
            proxy.cut()
        proxy.blackhole(True)  # a silent network: confirms time out, the relay must retry
        await asyncio.sleep(2.5)
        proxy.blackhole(False)
        proxy.cut()
        await producing

        async def all_applied() -> bool:
            async with consumer.sessions() as session:
                return (await effect_counts(session))[1] == total

        await eventually(all_applied, timeout=60)
        assert await unpublished(producer) == 0
        async with consumer.sessions() as session:
            rows, distinct, twice = await effect_counts(session)
        assert (rows, distinct, twice) == (total, total, 0)
        assert proxy.connections_accepted >= 4  # it really did reconnect
    finally:
        await relay.stop()
        await relay_bus.close()
        await consumer_bus.close()
        await proxy.stop()
        await producer.dispose()
        await consumer.dispose()


def start_relay_process(db_url: str, broker_url: str, namespace: str) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.support.workers",
            "relay",
            "--db",
            db_url,
            "--broker",
            broker_url,
            "--ns",
            namespace,
            "--batch",
            "100",
            "--pace",
            "0.03",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ},
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "relay started"
    return process


@pytest.mark.slow
@pytest.mark.exclusive
async def test_ten_thousand_events_survive_two_broker_restarts_and_a_killed_relay(rabbitmq_url, namespace, postgres):
    total = 10_000
    producer_url, consumer_url = postgres.create("producer"), postgres.create("consumer")
    create_schema(producer_url)
    create_schema(consumer_url)
    producer, consumer = Database(producer_url), Database(consumer_url)
    metrics = Metrics()
    consumer_bus = RabbitMQBus(
        f"{rabbitmq_url}?reconnect_interval=0.5", catalog=CATALOG, metrics=metrics, namespace=namespace
    )
    await consumer_bus.start()
    await consumer_bus.subscribe(consumer_subscriptions("ledger", consumer, metrics))
    relay = start_relay_process(producer_url, rabbitmq_url, namespace)
    started = time.monotonic()

    async def published_at_least(n: int) -> bool:
        return total - await unpublished(producer) >= n

    try:
        # Events keep being written while the broker goes away: the outbox absorbs them.
        producing = asyncio.create_task(produce(producer, 0, total, per_transaction=100))
        await eventually(lambda: published_at_least(1_500), timeout=60)
        await asyncio.to_thread(restart_broker_app)

        await eventually(lambda: published_at_least(4_000), timeout=90)
        relay.send_signal(signal.SIGKILL)  # between a confirm and its mark, likely
        relay.wait(timeout=10)
        relay = start_relay_process(producer_url, rabbitmq_url, namespace)

        await eventually(lambda: published_at_least(6_500), timeout=90)
        await asyncio.to_thread(restart_broker_app)
        await producing

        async def all_applied() -> bool:
            async with consumer.sessions() as session:
                return (await effect_counts(session))[1] == total

        await eventually(all_applied, timeout=180, every=0.5)
        await asyncio.sleep(1.0)  # let any straggling duplicate arrive before counting
        async with consumer.sessions() as session:
            rows, distinct, twice = await effect_counts(session)
        duplicates = int(metrics.duplicates.labels("ledger.record_effect")._value.get())
        print(
            f"\n10k outbox run: {distinct} of {total} applied, {total - distinct} lost, {twice} duplicate effects, "
            f"{duplicates} duplicate deliveries absorbed, {time.monotonic() - started:.1f}s"
        )
        assert distinct == total  # 0 lost
        assert rows == total  # 0 duplicate effects
        assert twice == 0
        assert await unpublished(producer) == 0
    finally:
        if relay.poll() is None:
            relay.kill()
        await consumer_bus.close()
        await producer.dispose()
        await consumer.dispose()
