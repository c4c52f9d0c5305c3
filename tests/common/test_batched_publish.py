"""A batch published under one channel lock keeps the order it was given in, and each
message gets its own outcome: confirmed, or returned when nothing routes it."""

from __future__ import annotations

import uuid

import aiormq
from pamqp import commands as spec

from common.events.publishing import publish_confirmed


def _properties(n: int) -> spec.Basic.Properties:
    return spec.Basic.Properties(delivery_mode=2, message_id=f"m{n}-{uuid.uuid4().hex[:8]}")


async def test_a_batch_arrives_in_order_and_a_returned_message_fails_alone(rabbitmq_url, namespace):
    connection = await aiormq.connect(rabbitmq_url)
    try:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        assert isinstance(channel, aiormq.Channel)
        queue = f"{namespace}.batched"
        await channel.queue_declare(queue, exclusive=True)
        messages = [(queue, f"{n}".encode(), _properties(n)) for n in range(300)]
        # The default exchange routes by queue name: this one goes nowhere and is returned.
        messages[150] = (f"{namespace}.nowhere", b"lost", _properties(150))
        outcomes = await publish_confirmed(channel, exchange="", messages=messages, confirm_timeout_s=10)
        assert [index for index, outcome in enumerate(outcomes) if outcome is not None] == [150]
        assert isinstance(outcomes[150], aiormq.exceptions.PublishError)
        # Tags stay in step with the broker's: a single publish after the batch is confirmed.
        single = await channel.basic_publish(b"after", routing_key=queue, properties=_properties(999))
        assert isinstance(single, spec.Basic.Ack)
        bodies = []
        for _ in range(300):
            got = await channel.basic_get(queue, no_ack=True)
            assert got.body is not None
            bodies.append(got.body.decode())
        assert bodies == [str(n) for n in range(300) if n != 150] + ["after"]
        assert not channel.message_id_delivery_tag  # nothing left behind for later returns
    finally:
        await connection.close()
