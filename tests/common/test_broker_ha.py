"""Broker high availability: a 3-node RabbitMQ cluster of this session's own loses the
node leading the quorum queues in the middle of a stream of events.

Every client gets all three addresses through the platform settings (the URL carries the
credentials, ``SMARTGYM_BROKER_ADDRESSES`` the nodes), so the relay and the consumer
move to a survivor on their own; the outbox keeps what the broker did not confirm and
the inbox absorbs redeliveries: nothing lost, nothing applied twice.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable

import pytest

from common.db import Database
from common.events.outbox import OutboxRelay
from common.events.rabbitmq import RabbitMQBus
from common.kernel import make_bus
from common.observability import Metrics
from common.settings import PlatformSettings
from tests.support.ledger import CATALOG, TABLES, consumer_subscriptions, create_schema, effect_counts
from tests.support.waiting import eventually

# Alone, after the parallel pass: it times a leader election and both clients' failover,
# and with the other worker's tests on the two cores the relay once published nothing for
# the whole window (docs/adr/0061).
pytestmark = pytest.mark.exclusive

TOTAL = 2_000
PER_TRANSACTION = 20
# Generous: on a quiet machine both take well under 3 s. A publish channel opened while
# the new leader was being elected nacks every publish until the bus renews it.
RECONNECT_WITHIN_S = 60.0


def cluster_settings(cluster, namespace: str) -> PlatformSettings:
    return PlatformSettings(
        broker_url="amqp://guest:guest@127.0.0.1:1/",  # host:port replaced by the addresses
        broker_addresses=",".join(node.address for node in cluster.nodes),  # as the variable is written
        broker_reconnect_interval_s=0.5,
        bus_namespace=namespace,
        bus_retry_delays_ms=(100, 200),
    )


async def produce(database: Database, count: int, *, pace_s: float) -> None:
    from common.events.outbox import UnitOfWork
    from tests.support.ledger import EntryRecorded

    for first in range(0, count, PER_TRANSACTION):
        async with UnitOfWork(database, TABLES, on_commit=lambda: None) as uow:
            for seq in range(first, min(first + PER_TRANSACTION, count)):
                uow.emit(EntryRecorded(seq=seq))
        await asyncio.sleep(pace_s)


async def applied(database: Database) -> int:
    async with database.sessions() as session:
        return (await effect_counts(session))[1]


async def test_losing_the_quorum_leader_mid_stream_loses_and_duplicates_nothing(rabbit_cluster, namespace, postgres):
    producer_url, consumer_url = postgres.create("ha_producer"), postgres.create("ha_consumer")
    create_schema(producer_url)
    create_schema(consumer_url)
    producer, consumer = Database(producer_url), Database(consumer_url)
    settings = cluster_settings(rabbit_cluster, namespace)
    assert len(settings.broker_urls()) == 3
    metrics = Metrics()
    consumer_bus = make_bus(settings, metrics, CATALOG)
    relay_bus = make_bus(settings, metrics, CATALOG)
    assert isinstance(consumer_bus, RabbitMQBus)
    assert isinstance(relay_bus, RabbitMQBus)
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
    queue = consumer_bus.topology.queue("ledger")
    try:
        # Both clients start on the first address; the queue, declared there, is led there.
        first = rabbit_cluster.nodes[0].address
        assert consumer_bus.health()["node"] == first
        assert relay_bus.health()["node"] == first
        producing = asyncio.create_task(produce(producer, TOTAL, pace_s=0.02))
        await eventually(lambda: _at_least(applied(consumer), TOTAL // 4), timeout=60)

        leader, members = await asyncio.to_thread(rabbit_cluster.quorum_of, queue)
        assert len(members) == 3  # replicated on every node: losing one keeps a majority
        await asyncio.to_thread(rabbit_cluster.kill, leader)
        killed_at = time.monotonic()
        before = await applied(consumer)

        # Both move to a survivor and carry on: the relay publishes, the consumer applies.
        await eventually(lambda: consumer_bus.health()["ok"] and relay_bus.health()["ok"], timeout=RECONNECT_WITHIN_S)
        published_before = _published(metrics)
        await eventually(lambda: _published(metrics) > published_before, timeout=RECONNECT_WITHIN_S)
        await eventually(lambda: _at_least(applied(consumer), before + 1), timeout=RECONNECT_WITHIN_S)
        resumed_after = time.monotonic() - killed_at
        survivors = {node.address for node in rabbit_cluster.nodes if node is not leader}
        assert consumer_bus.health()["node"] in survivors
        assert relay_bus.health()["node"] in survivors

        await producing
        await eventually(lambda: _at_least(applied(consumer), TOTAL), timeout=90, every=0.2)
        await asyncio.sleep(1.0)  # a straggling redelivery would land now
        async with consumer.sessions() as session:
            rows, distinct, twice = await effect_counts(session)
        absorbed = int(metrics.duplicates.labels("ledger.record_effect")._value.get())
        print(
            f"\nHA run: killed {leader.name} (leader of {queue}); consumer and relay resumed on survivors "
            f"{resumed_after:.1f}s later; {distinct}/{TOTAL} applied, {twice} twice, {absorbed} redeliveries absorbed"
        )
        assert distinct == TOTAL  # 0 lost
        assert rows == TOTAL
        assert twice == 0
        assert await relay.backlog() == 0
        new_leader = await asyncio.to_thread(rabbit_cluster.leader_of, queue)
        assert new_leader is not leader
    finally:
        await relay.stop()
        await relay_bus.close()
        await consumer_bus.close()
        await producer.dispose()
        await consumer.dispose()


def _published(metrics: Metrics) -> float:
    return sum(
        sample.value
        for family in metrics.published.collect()
        for sample in family.samples
        if sample.name.endswith("_total")
    )


async def _at_least(count: Awaitable[int], wanted: int) -> bool:
    return await count >= wanted
