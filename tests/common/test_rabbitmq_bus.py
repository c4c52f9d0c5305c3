"""The RabbitMQ bus against the real broker: confirms, retries, parking, idempotence."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from common.db import Database
from common.events.bus import Subscriptions
from common.events.envelope import OutgoingMessage
from common.events.rabbitmq import ERROR_HEADER, RabbitMQBus
from common.observability import Metrics
from tests.support.amqp import drain, publish_raw
from tests.support.ledger import CATALOG, EntryRecorded, consumer_subscriptions, create_schema, effect_counts
from tests.support.waiting import eventually

pytestmark = pytest.mark.usefixtures("broker_cleanup")


def make_bus(url: str, namespace: str, metrics: Metrics | None = None, **options) -> RabbitMQBus:
    return RabbitMQBus(
        url,
        catalog=CATALOG,
        metrics=metrics or Metrics(),
        namespace=namespace,
        retry_delays_ms=options.pop("retry_delays_ms", (50, 100)),
        **options,
    )


async def test_redelivered_event_is_applied_once(rabbitmq_url, namespace, postgres):
    url = postgres.create("consumer")
    create_schema(url)
    database = Database(url)
    metrics = Metrics()
    bus = make_bus(rabbitmq_url, namespace, metrics)
    await bus.start()
    try:
        await bus.subscribe(consumer_subscriptions("ledger", database, metrics))
        event = EntryRecorded(seq=1)
        # The same event twice: what a relay killed between confirm and mark produces.
        await bus.publish_many([OutgoingMessage.of(event), OutgoingMessage.of(event)])

        async def both_delivered() -> bool:
            return metrics.duplicates.labels("ledger.record_effect")._value.get() == 1

        await eventually(both_delivered)
        async with database.sessions() as session:
            assert await effect_counts(session) == (1, 1, 0)
    finally:
        await bus.close()
        await database.dispose()


async def test_failing_handler_is_retried_then_parked_with_its_error(rabbitmq_url, namespace):
    bus = make_bus(rabbitmq_url, namespace, max_attempts=3)
    await bus.start()
    calls: list[int] = []

    async def always_fails(event: EntryRecorded) -> None:
        calls.append(event.seq)
        raise RuntimeError("printer on fire")

    subs = Subscriptions("ledger")
    subs.add_bus_handler(EntryRecorded, always_fails, name="always_fails")
    try:
        await bus.subscribe(subs)
        await bus.publish_many([OutgoingMessage.of(EntryRecorded(seq=7))])
        await eventually(lambda: _true_after(len(calls) >= 3), timeout=15)
        await asyncio.sleep(0.3)  # a fourth attempt would have arrived by now
        assert calls == [7, 7, 7]
    finally:
        await bus.close()
    parked = await drain(rabbitmq_url, bus.topology.parking_queue("ledger"))
    assert len(parked) == 1
    assert "printer on fire" in parked[0].headers[ERROR_HEADER]
    assert json.loads(parked[0].body)["data"]["seq"] == 7


async def test_transient_failure_is_retried_with_backoff_and_succeeds(rabbitmq_url, namespace):
    bus = make_bus(rabbitmq_url, namespace, max_attempts=5)
    await bus.start()
    seen: list[float] = []
    loop = asyncio.get_running_loop()

    async def flaky(event: EntryRecorded) -> None:
        seen.append(loop.time())
        if len(seen) < 3:
            raise ConnectionError("database blip")

    subs = Subscriptions("ledger")
    subs.add_bus_handler(EntryRecorded, flaky, name="flaky")
    try:
        await bus.subscribe(subs)
        await bus.publish_many([OutgoingMessage.of(EntryRecorded(seq=1))])
        await eventually(lambda: _true_after(len(seen) >= 3), timeout=15)
    finally:
        await bus.close()
    assert seen[1] - seen[0] >= 0.045  # the configured back-off: 50 ms, then 100 ms
    assert seen[2] - seen[1] >= 0.095
    assert await drain(rabbitmq_url, bus.topology.parking_queue("ledger")) == []


async def test_malformed_payload_is_parked_and_the_consumer_keeps_going(rabbitmq_url, namespace):
    bus = make_bus(rabbitmq_url, namespace)
    await bus.start()
    handled: list[int] = []

    async def record(event: EntryRecorded) -> None:
        handled.append(event.seq)

    subs = Subscriptions("ledger")
    subs.add_bus_handler(EntryRecorded, record, name="record")
    try:
        await bus.subscribe(subs)
        routing_key = EntryRecorded.routing_key()
        exchange = bus.topology.events_exchange
        await publish_raw(rabbitmq_url, exchange, routing_key, b"\xff not json")
        await publish_raw(
            rabbitmq_url,
            exchange,
            routing_key,
            json.dumps(
                {"event_name": "TestEntryRecorded", "event_version": 1, "event_id": "nope", "data": {"seq": "x"}}
            ).encode(),
        )
        await bus.publish_many([OutgoingMessage.of(EntryRecorded(seq=42))])
        await eventually(lambda: _true_after(handled == [42]))
    finally:
        await bus.close()
    parked = await drain(rabbitmq_url, bus.topology.parking_queue("ledger"))
    reasons = sorted(message.headers[ERROR_HEADER] for message in parked)
    assert len(reasons) == 2
    assert reasons[0].startswith("malformed: body is not JSON")
    assert "malformed: invalid TestEntryRecorded.v1" in reasons[1]


async def test_event_nobody_consumes_yet_is_kept_not_dropped(rabbitmq_url, namespace):
    bus = make_bus(rabbitmq_url, namespace)
    await bus.start()
    try:
        await bus.publish_many([OutgoingMessage.of(EntryRecorded(seq=3))])
    finally:
        await bus.close()
    kept = await drain(rabbitmq_url, bus.topology.unrouted_queue)
    assert [json.loads(message.body)["data"]["seq"] for message in kept] == [3]


async def test_consumer_killed_mid_handler_gets_redelivery_applied_once(rabbitmq_url, namespace, postgres):
    url = postgres.create("consumer")
    create_schema(url)
    database = Database(url)
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.support.workers",
            "consume",
            "--db",
            url,
            "--broker",
            rabbitmq_url,
            "--ns",
            namespace,
            "--delay",
            "0.2",
            "--prefetch",
            "5",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ},
    )
    metrics = Metrics()
    bus = make_bus(rabbitmq_url, namespace, metrics)
    try:
        assert worker.stdout is not None
        assert worker.stdout.readline().strip() == "consumer started"
        await bus.start()
        await bus.publish_many([OutgoingMessage.of(EntryRecorded(seq=n)) for n in range(40)])

        async def some_applied() -> bool:
            async with database.sessions() as session:
                return (await effect_counts(session))[0] >= 5

        await eventually(some_applied, timeout=20)
        worker.send_signal(signal.SIGKILL)  # mid-handler: up to 5 messages unacked, one transaction open
        worker.wait(timeout=10)

        await bus.subscribe(consumer_subscriptions("ledger", database, metrics))

        async def all_applied() -> bool:
            async with database.sessions() as session:
                return (await effect_counts(session))[1] == 40

        await eventually(all_applied, timeout=30)
        await asyncio.sleep(0.5)
        async with database.sessions() as session:
            rows, distinct, twice = await effect_counts(session)
        assert (rows, distinct, twice) == (40, 40, 0)
    finally:
        if worker.poll() is None:
            worker.kill()
        await bus.close()
        await database.dispose()


async def _true_after(value: bool) -> bool:
    return value


async def test_broadcast_reaches_every_replica(rabbitmq_url, namespace):
    replicas = [make_bus(rabbitmq_url, namespace) for _ in range(2)]
    received: list[list[int]] = [[], []]
    for index, bus in enumerate(replicas):
        await bus.start()

        async def remember(event, index=index):
            received[index].append(event.seq)

        await bus.broadcast([EntryRecorded], remember)
    try:
        await replicas[0].publish_many([OutgoingMessage.of(EntryRecorded(seq=5))])
        await eventually(lambda: _true_after(received == [[5], [5]]))
    finally:
        for bus in replicas:
            await bus.close()


async def test_a_busy_loop_still_takes_in_the_whole_prefetch_window(rabbitmq_url, namespace):
    """Deliveries move from the connection to the consumer in few loop iterations, so a
    process that is busy with other work (notification sends pushes on the same loop)
    still lets the broker fill its window instead of taking ~3 deliveries per iteration."""
    prefetch = 200
    bus = make_bus(rabbitmq_url, namespace, prefetch=prefetch, batch_size=prefetch)
    await bus.start()
    release = asyncio.Event()

    async def held(event: EntryRecorded) -> None:
        await release.wait()

    subs = Subscriptions("ledger")
    subs.add_bus_handler(EntryRecorded, held, name="held")

    async def publish() -> None:
        publisher = make_bus(rabbitmq_url, namespace)
        await publisher.start()
        try:
            await publisher.publish_many([OutgoingMessage.of(EntryRecorded(seq=n)) for n in range(prefetch)])
        finally:
            await publisher.close()

    iterations = 0

    async def busy() -> None:
        nonlocal iterations
        while True:
            time.sleep(0.005)  # other work on the loop: every iteration costs 5 ms
            iterations += 1
            await asyncio.sleep(0)

    try:
        await bus.subscribe(subs)
        watermark = bus._consumers["ledger"]._watermark
        assert watermark is not None
        # Published from another thread while this loop stands still: the whole window
        # waits in the socket when the loop turns again.
        publisher = threading.Thread(target=lambda: asyncio.run(publish()))
        publisher.start()
        publisher.join()
        time.sleep(0.3)
        spinner = asyncio.create_task(busy())
        try:
            await eventually(lambda: _true_after(watermark.pending >= prefetch), timeout=15)
        finally:
            spinner.cancel()
        # With aiormq's 10-frame queue this took ~60 iterations.
        assert iterations < 20, iterations
    finally:
        release.set()
        await bus.close()
