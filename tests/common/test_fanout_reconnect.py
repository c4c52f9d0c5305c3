"""Live fan-out between replicas comes back after a cut connection: the robust
connection declares the replica's queue again and its batch consumer is added again
(it lives on the AMQP client's own channel, which the connection does not restore)."""

from __future__ import annotations

from collections.abc import Callable

import aio_pika
import pytest

from common.events.fanout import TopicFanout
from tests.support.faultproxy import FaultProxy
from tests.support.waiting import eventually

pytestmark = pytest.mark.usefixtures("broker_cleanup")


async def test_batches_arrive_again_after_a_cut_connection(rabbitmq_url, namespace):
    proxy, through_proxy = await FaultProxy.in_front_of(rabbitmq_url)
    seen: list[str] = []
    follower = TopicFanout(f"{through_proxy}?reconnect_interval=0.2", exchange=f"{namespace}.live", replica="b",
                           on_message=lambda topic, message: seen.append(message))  # fmt: skip
    publisher = TopicFanout(rabbitmq_url, exchange=f"{namespace}.live", replica="a", on_message=lambda *_: None)
    await publisher.start()
    await follower.start()
    sent = 0

    def arrived(kind: str) -> Callable[[], bool]:
        # Published until one arrives: until the replicas have heard of each other (start
        # does not wait for that), and while the follower is away (its queue is gone).
        def check() -> bool:
            nonlocal sent
            if any(message.startswith(kind) for message in seen):
                return True
            sent += 1
            publisher.publish("run.1", f"{kind} {sent}")
            return False

        return check

    try:
        await follower.interested("run.1")
        await eventually(arrived("before"))
        proxy.cut()
        await eventually(arrived("after"), timeout=30)
        publisher.publish("run.1", "last")
        await eventually(lambda: seen[-1] == "last")
        # In order and none twice; from the first that arrived after the cut, none lost.
        numbers = [int(message.split()[1]) for message in seen[:-1]]
        assert numbers == sorted(set(numbers))
        after = [int(message.split()[1]) for message in seen if message.startswith("after")]
        assert after == list(range(after[0], after[0] + len(after)))
    finally:
        await follower.close()
        await publisher.close()
        await proxy.stop()
        # The queues were exclusive; the interest exchange is durable and outside the
        # namespace's usual names.
        connection = await aio_pika.connect(rabbitmq_url)
        async with connection:
            await (await connection.channel()).exchange_delete(f"{namespace}.live.interest")
