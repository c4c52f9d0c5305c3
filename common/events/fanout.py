"""Transient fan-out between replicas over RabbitMQ: a topic exchange, one exclusive
queue per replica, bound to a topic only while the replica has local subscribers for it.

For live data that is not a domain event (a runner's position a second ago): messages
are non-persistent, unconfirmed and outside the outbox; a replica skips its own messages,
which it has already delivered locally. Order is kept per topic: one publishing channel
per replica and one consumer per queue.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import aio_pika
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection

log = logging.getLogger(__name__)


OnMessage = Callable[[str, str], None]


class TopicFanout:
    def __init__(self, url: str, *, exchange: str, replica: str, on_message: OnMessage) -> None:
        self._url = url
        self._exchange_name = exchange
        self._queue_name = f"{exchange}.{replica}"
        self._replica = replica
        self._on_message_callback = on_message
        self._connection: AbstractRobustConnection | None = None
        self._exchange: aio_pika.abc.AbstractExchange | None = None
        self._queue: aio_pika.abc.AbstractQueue | None = None
        self._bound: set[str] = set()
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        self._connection = await aio_pika.connect_robust(self._url)
        channel = await self._connection.channel(publisher_confirms=False)
        await channel.set_qos(prefetch_count=5000)
        self._exchange = await channel.declare_exchange(self._exchange_name, aio_pika.ExchangeType.TOPIC, durable=True)
        # Exclusive and auto-deleted: it lives exactly as long as this replica's connection.
        self._queue = await channel.declare_queue(self._queue_name, exclusive=True, auto_delete=True)
        await self._queue.consume(self._on_message, no_ack=True)

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()

    async def publish(self, topic: str, message: str) -> None:
        if self._exchange is None:
            return
        await self._exchange.publish(
            aio_pika.Message(
                message.encode(), app_id=self._replica, delivery_mode=aio_pika.DeliveryMode.NOT_PERSISTENT
            ),
            routing_key=topic,
            # Nobody watching elsewhere is the common case: no basic.return for it.
            mandatory=False,
        )

    async def interested(self, topic: str) -> None:
        async with self._lock:
            if topic not in self._bound and self._queue is not None:
                await self._queue.bind(self._exchange_name, routing_key=topic)
                self._bound.add(topic)

    async def not_interested(self, topic: str) -> None:
        async with self._lock:
            if topic in self._bound and self._queue is not None:
                await self._queue.unbind(self._exchange_name, routing_key=topic)
                self._bound.discard(topic)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        if message.app_id == self._replica or message.routing_key is None:
            return  # ours: already delivered here
        self._on_message_callback(message.routing_key, message.body.decode())
