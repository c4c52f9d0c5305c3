"""Transient fan-out between replicas over RabbitMQ: a topic exchange, one exclusive
queue per replica, bound to a topic only while the replica has local subscribers for it.

For live data that is not a domain event (a runner's position a second ago): messages
are non-persistent, unconfirmed and outside the outbox; a replica skips its own messages,
which it has already delivered locally. Order is kept per topic: one publishing channel
per replica and one consumer per queue.

Replicas also tell each other which topics they follow (a small fanout exchange of
interest notices), so a message nobody elsewhere follows — most runs have no watcher on
another replica — is never published at all. A replica that starts asks the others to
repeat their interests. The cost is a window of a few milliseconds after a watcher
subscribes in which positions do not reach it yet: the next one, a second later, does.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Sequence

import aio_pika
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection

from common.events.cluster import connect_cluster

log = logging.getLogger(__name__)

OnMessage = Callable[[str, str], None]


class TopicFanout:
    def __init__(self, url: str | Sequence[str], *, exchange: str, replica: str, on_message: OnMessage) -> None:
        self._url = url
        self._exchange_name = exchange
        self._interest_name = f"{exchange}.interest"
        self._queue_name = f"{exchange}.{replica}"
        self._replica = replica
        self._on_message_callback = on_message
        self._connection: AbstractRobustConnection | None = None
        self._exchange: aio_pika.abc.AbstractExchange | None = None
        self._interest: aio_pika.abc.AbstractExchange | None = None
        self._queue: aio_pika.abc.AbstractQueue | None = None
        self._bound: set[str] = set()
        self._remote: dict[str, set[str]] = {}  # topic -> other replicas that follow it
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        self._connection = await connect_cluster(self._url)
        channel = await self._connection.channel(publisher_confirms=False)
        await channel.set_qos(prefetch_count=5000)
        self._exchange = await channel.declare_exchange(self._exchange_name, aio_pika.ExchangeType.TOPIC, durable=True)
        self._interest = await channel.declare_exchange(self._interest_name, aio_pika.ExchangeType.FANOUT, durable=True)
        # Exclusive and auto-deleted: they live exactly as long as this replica's connection.
        self._queue = await channel.declare_queue(self._queue_name, exclusive=True, auto_delete=True)
        await self._queue.consume(self._on_message, no_ack=True)
        notices = await channel.declare_queue(f"{self._queue_name}.interest", exclusive=True, auto_delete=True)
        await notices.bind(self._interest)
        await notices.consume(self._on_notice, no_ack=True)
        await self._announce({"hello": True})

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()

    async def publish(self, topic: str, message: str) -> None:
        if self._exchange is None:
            return
        if not self._remote.get(topic):
            return
        await self._exchange.publish(
            aio_pika.Message(
                message.encode(), app_id=self._replica, delivery_mode=aio_pika.DeliveryMode.NOT_PERSISTENT
            ),
            routing_key=topic,
            # A replica that stopped following a moment ago: no basic.return for it.
            mandatory=False,
        )

    async def interested(self, topic: str) -> None:
        async with self._lock:
            if topic not in self._bound and self._queue is not None:
                await self._queue.bind(self._exchange_name, routing_key=topic)
                self._bound.add(topic)
                await self._announce({"topic": topic, "on": True})

    async def not_interested(self, topic: str) -> None:
        async with self._lock:
            if topic in self._bound and self._queue is not None:
                await self._queue.unbind(self._exchange_name, routing_key=topic)
                self._bound.discard(topic)
                await self._announce({"topic": topic, "on": False})

    async def _announce(self, notice: dict[str, object]) -> None:
        if self._interest is not None:
            body = json.dumps({"replica": self._replica, **notice}).encode()
            await self._interest.publish(aio_pika.Message(body), routing_key="", mandatory=False)

    async def _on_notice(self, message: AbstractIncomingMessage) -> None:
        try:
            notice = json.loads(message.body)
            replica = str(notice["replica"])
        except (ValueError, KeyError, TypeError):
            log.warning("ignored a malformed interest notice")
            return
        if replica == self._replica:
            return
        if notice.get("hello"):
            # A replica (re)started: tell it everything this one follows.
            for topic in list(self._bound):
                await self._announce({"topic": topic, "on": True})
            return
        topic = str(notice.get("topic", ""))
        followers = self._remote.setdefault(topic, set())
        if notice.get("on"):
            followers.add(replica)
        else:
            followers.discard(replica)
            if not followers:
                self._remote.pop(topic, None)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        if message.app_id == self._replica or message.routing_key is None:
            return  # ours: already delivered here
        self._on_message_callback(message.routing_key, message.body.decode())
