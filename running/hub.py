"""Live fan-out: local subscribers per topic, and a relay that carries every message to
the other replicas that have subscribers for it.

Topics are ``run.<id>``, ``race.<id>`` and ``outing.<id>``. A message published here goes
straight to this replica's subscribers and, through the relay, to every other replica
that declared interest in the topic. Messages are transient: a watcher that is not
connected misses nothing it could use later — the run's stored track is the record.

``subscribe`` returns once the other replicas know of the interest (see
common.events.fanout): a subscriber told "subscribed" after it misses nothing published
anywhere afterwards. A second subscriber of a topic whose interest is still on its way
waits for the same answer (``ready``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

log = logging.getLogger(__name__)


class Subscriber(Protocol):
    def deliver(self, topic: str, message: str) -> None: ...


class Relay(Protocol):
    def publish(self, topic: str, message: str) -> None: ...
    async def interested(self, topic: str) -> None: ...
    async def not_interested(self, topic: str) -> None: ...


class Hub:
    def __init__(self) -> None:
        self._topics: dict[str, set[Subscriber]] = {}
        self._relay: Relay | None = None
        self._pending: dict[str, asyncio.Future[None]] = {}

    def attach(self, relay: Relay) -> None:
        self._relay = relay

    async def subscribe(self, topic: str, subscriber: Subscriber) -> None:
        subscribers = self._topics.setdefault(topic, set())
        first = not subscribers
        subscribers.add(subscriber)
        if self._relay is None:
            return
        if not first:
            await self.ready(topic)
            return
        pending = asyncio.ensure_future(self._relay.interested(topic))
        self._pending[topic] = pending

        def settled(done: asyncio.Future[None]) -> None:
            if self._pending.get(topic) is done:
                del self._pending[topic]

        pending.add_done_callback(settled)
        # Shielded: a subscriber that leaves while waiting must not cancel the notice
        # other subscribers of the topic wait for.
        await asyncio.shield(pending)

    async def ready(self, topic: str) -> None:
        """Wait until the topic's interest, if still on its way, has been acknowledged."""
        pending = self._pending.get(topic)
        if pending is not None:
            await asyncio.shield(pending)

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
            self._relay.publish(topic, message)

    def deliver_local(self, topic: str, message: str) -> None:
        subscribers = self._topics.get(topic)
        if not subscribers:
            return
        for subscriber in list(subscribers):
            try:
                subscriber.deliver(topic, message)
            except Exception:
                log.warning("a live subscriber failed on %s", topic, exc_info=True)
