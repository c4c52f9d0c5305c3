"""Live fan-out batches between replicas: the first message after a quiet spell leaves at
once, a batch that reaches its size cap leaves before the window ends, and a small one
waits for the window (one AMQP message instead of many)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import aio_pika
import pytest

from common.events.fanout import TopicFanout
from tests.support.waiting import eventually

pytestmark = pytest.mark.usefixtures("broker_cleanup")

WINDOW_S = 1.0


async def hellos_until(publisher: TopicFanout, topic: str, *, heard: Callable[[], bool]) -> None:
    """Publish hellos on ``topic`` until ``heard`` holds: start() does not wait for the
    replicas to hear of each other."""
    sent = 0

    def check() -> bool:
        nonlocal sent
        if heard():
            return True
        sent += 1
        publisher.publish(topic, f"hello {sent}")
        return False

    await eventually(check)


async def test_batches_leave_at_once_when_full_and_after_the_window_when_small(rabbitmq_url, namespace):
    arrivals: dict[str, float] = {}

    def arrived(_topic: str, message: str) -> None:
        arrivals.setdefault(message, time.monotonic())

    follower = TopicFanout(rabbitmq_url, exchange=f"{namespace}.live", replica="b", on_message=arrived)
    publisher = TopicFanout(rabbitmq_url, exchange=f"{namespace}.live", replica="a", on_message=lambda *_: None,
                            flush_window_s=WINDOW_S, batch_entries=10)  # fmt: skip
    await publisher.start()
    await follower.start()
    try:
        await follower.interested("run.1")
        await hellos_until(publisher, "run.1", heard=lambda: bool(arrivals))
        await asyncio.sleep(WINDOW_S + 0.3)  # a quiet spell

        published = time.monotonic()
        publisher.publish("run.1", "alone")
        await eventually(lambda: "alone" in arrivals)
        assert arrivals["alone"] - published < 0.5 * WINDOW_S

        published = time.monotonic()
        for n in range(25):
            publisher.publish("run.1", f"full {n}")
        await eventually(lambda: "full 24" in arrivals)
        assert arrivals["full 24"] - published < 0.5 * WINDOW_S

        published = time.monotonic()
        for n in range(3):
            publisher.publish("run.1", f"small {n}")
        await eventually(lambda: "small 2" in arrivals)
        assert arrivals["small 2"] - published > 0.6 * WINDOW_S
        order = [message for message in arrivals if not message.startswith("hello")]
        assert order == ["alone", *(f"full {n}" for n in range(25)), *(f"small {n}" for n in range(3))]

        # An acknowledgement of interest does not wait for the window: a watcher waits for it.
        publisher.publish("run.1", "opens a window")
        await eventually(lambda: "opens a window" in arrivals)
        began = time.monotonic()
        await follower.interested("run.2")
        assert time.monotonic() - began < 0.5 * WINDOW_S
    finally:
        await follower.close()
        await publisher.close()
        connection = await aio_pika.connect(rabbitmq_url)
        async with connection:
            await (await connection.channel()).exchange_delete(f"{namespace}.live.interest")


async def test_replicas_that_follow_the_same_topics_get_one_batch_each_exactly_once(rabbitmq_url, namespace):
    seen: dict[str, list[str]] = {"b": [], "c": []}

    def recorder(name: str) -> Callable[[str, str], None]:
        return lambda _topic, message: seen[name].append(message)

    followers = [
        TopicFanout(rabbitmq_url, exchange=f"{namespace}.live", replica=name, on_message=recorder(name))
        for name in seen
    ]
    publisher = TopicFanout(rabbitmq_url, exchange=f"{namespace}.live", replica="a", on_message=lambda *_: None)
    await publisher.start()
    for follower in followers:
        await follower.start()
    try:
        for follower in followers:
            await follower.interested("run.1")
        await followers[1].interested("run.2")  # only c follows run.2
        await hellos_until(publisher, "run.1", heard=lambda: all(seen.values()))
        await asyncio.sleep(0.3)  # the last hellos have left
        before = publisher.publishes
        for n in range(50):
            publisher.publish("run.1", f"shared {n}")
        await eventually(lambda: all(any(m == "shared 49" for m in messages) for messages in seen.values()))
        # One publish carried the shared batch to both replicas.
        assert publisher.publishes - before == 1
        for n in range(5):
            publisher.publish("run.2", f"c only {n}")
        await eventually(lambda: "c only 4" in seen["c"])
        await asyncio.sleep(0.3)
        for name, messages in seen.items():
            shared = [message for message in messages if message.startswith("shared")]
            assert shared == [f"shared {n}" for n in range(50)], name  # in order, none twice
        assert [message for message in seen["b"] if message.startswith("c only")] == []
        assert [message for message in seen["c"] if message.startswith("c only")] == [f"c only {n}" for n in range(5)]
        assert publisher.publishes - before == 2
    finally:
        for follower in followers:
            await follower.close()
        await publisher.close()
        connection = await aio_pika.connect(rabbitmq_url)
        async with connection:
            await (await connection.channel()).exchange_delete(f"{namespace}.live.interest")
