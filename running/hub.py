"""Live fan-out: local subscribers per topic, and a relay that carries every message to
the other replicas that have subscribers for it.

Topics are ``run.<id>``, ``race.<id>`` and ``outing.<id>``. A message published here goes
straight to this replica's subscribers and, through the relay, to every other replica
that declared interest in the topic (RabbitMQ binds the topic to that replica's queue
only while it has subscribers). Messages are transient: a watcher that is not connected
misses nothing it could use later — the run's stored track is the record.
"""

from __future__ import annotations

import logging
from typing import Protocol

log = logging.getLogger(__name__)


class Subscriber(Protocol):
    def deliver(self, topic: str, message: str) -> None: ...


class Relay(Protocol):
    async def publish(self, topic: str, message: str) -> None: ...
    async def interested(self, topic: str) -> None: ...
    async def not_interested(self, topic: str) -> None: ...


class Hub:
    def __init__(self) -> None:
        self._topics: dict[str, set[Subscriber]] = {}
        self._relay: Relay | None = None

    def attach(self, relay: Relay) -> None:
        self._relay = relay

    async def subscribe(self, topic: str, subscriber: Subscriber) -> None:
        subscribers = self._topics.setdefault(topic, set())
        first = not subscribers
        subscribers.add(subscriber)
        if first and self._relay is not None:
            await self._relay.interested(topic)

    async def unsubscribe(self, topic: str, subscriber: Subscriber) -> None:
        subscribers = self._topics.get(topic)
        if subscribers is None:
            return
        subscribers.discard(subscriber)
        if not subscribers:
            del self._topics[topic]
            if self._relay is not None:
                await self._relay.not_interested(topic)

    async def publish(self, topic: str, message: str) -> None:
        self.deliver_local(topic, message)
        if self._relay is not None:
            await self._relay.publish(topic, message)

    def deliver_local(self, topic: str, message: str) -> None:
        for subscriber in list(self._topics.get(topic, ())):
            try:
                subscriber.deliver(topic, message)
            except Exception:
                log.warning("a live subscriber failed on %s", topic, exc_info=True)
