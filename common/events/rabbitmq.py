"""The RabbitMQ event bus (aio-pika), configured not to lose messages.

Topology (``ns`` is the bus namespace; see docs/adr/0002-rabbitmq-topology.md):

* ``ns.events``  topic exchange, durable, every event routed as ``Name.vN``. Its
  alternate exchange ``ns.unrouted`` keeps messages that no queue is bound for yet.
* ``ns.<service>``  one durable quorum queue per consuming service, bound to the routing
  keys it subscribes to. ``x-delivery-limit`` caps redeliveries after consumer crashes;
  past it the broker dead-letters (at-least-once) to the service's parking lot.
* ``ns.<service>.retry.<ms>``  delay queues: a failed message is re-published here with
  its attempt count; the TTL dead-letters it back into ``ns.<service>``.
* ``ns.<service>.parking``  poison messages with the reason in headers, for an operator.

Publishing: persistent messages, publisher confirms, ``mandatory`` with returns raising.
Consuming (:mod:`common.events.consumer`): manual acks, an ack only after the handler's
effects committed (batched, ``multiple=True``), bounded prefetch. A handler that raises
never drops the message: it is retried, then parked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)
from pamqp.commands import Basic

from common.events.bus import PublishError, Subscriptions
from common.events.cluster import ClusterConnection, connect_cluster
from common.events.consumer import ATTEMPT_HEADER, ERROR_HEADER, PARKED_FROM_HEADER, ServiceConsumer
from common.events.envelope import Event, EventCatalog, OutgoingMessage
from common.events.publishing import publish_confirmed
from common.observability import Metrics
from common.tracing import TRACEPARENT

log = logging.getLogger(__name__)

__all__ = ["ATTEMPT_HEADER", "ERROR_HEADER", "PARKED_FROM_HEADER", "QUORUM_DEAD_LETTER_ARGS", "RabbitMQBus", "Topology"]

QUORUM_DEAD_LETTER_ARGS: dict[str, Any] = {
    "x-queue-type": "quorum",
    # Without these two a quorum queue dead-letters at-most-once: a message can vanish
    # between the source queue and the parking lot.
    "x-dead-letter-strategy": "at-least-once",
    "x-overflow": "reject-publish",
}


class Topology:
    """Names and arguments of every exchange and queue, in one place."""

    def __init__(self, namespace: str, retry_delays_ms: Sequence[int], delivery_limit: int) -> None:
        if not retry_delays_ms:
            raise ValueError("at least one retry delay is needed")
        self.namespace = namespace
        self.retry_delays_ms = tuple(retry_delays_ms)
        self.delivery_limit = delivery_limit
        self.events_exchange = f"{namespace}.events"
        self.unrouted_exchange = f"{namespace}.unrouted"
        self.unrouted_queue = f"{namespace}.unrouted"
        self.retry_exchange = f"{namespace}.retry"
        self.parking_exchange = f"{namespace}.parking"

    def queue(self, service: str) -> str:
        return f"{self.namespace}.{service}"

    def parking_queue(self, service: str) -> str:
        return f"{self.namespace}.{service}.parking"

    def retry_queue(self, service: str, delay_ms: int) -> str:
        return f"{self.namespace}.{service}.retry.{delay_ms}"

    def retry_delay_ms(self, attempt: int) -> int:
        """Back-off before attempt ``attempt + 1`` (the last delay repeats)."""
        return self.retry_delays_ms[min(attempt, len(self.retry_delays_ms)) - 1]

    def all_queues(self, service: str) -> list[str]:
        return [
            self.queue(service),
            self.parking_queue(service),
            *(self.retry_queue(service, delay) for delay in self.retry_delays_ms),
        ]


class RabbitMQBus:
    """Event bus over RabbitMQ with confirms, retries through delay queues and a parking lot."""

    def __init__(
        self,
        url: str | Sequence[str],
        *,
        catalog: EventCatalog,
        metrics: Metrics,
        namespace: str = "smartgym",
        prefetch: int = 256,
        batch_size: int = 100,
        batch_linger_s: float = 0.002,
        workers: int = 4,
        max_attempts: int = 5,
        retry_delays_ms: Sequence[int] = (200, 1_000, 5_000),
        delivery_limit: int = 20,
        confirm_timeout_s: float = 10.0,
    ) -> None:
        # Several URLs: one per node of a cluster, tried in order (common/events/cluster.py).
        self._urls = [url] if isinstance(url, str) else list(url)
        self._catalog = catalog
        self._metrics = metrics
        self._prefetch = prefetch
        self._batch_size = batch_size
        self._batch_linger_s = batch_linger_s
        self._workers = workers
        self._max_attempts = max_attempts
        self._confirm_timeout_s = confirm_timeout_s
        self.topology = Topology(namespace, retry_delays_ms, delivery_limit)
        self._connection: AbstractRobustConnection | None = None
        self._publish_channel: AbstractChannel | None = None
        self._publish_channel_renewed_at = 0.0
        self._consumers: dict[str, ServiceConsumer] = {}
        self._broadcast_channels: list[AbstractChannel] = []
        self._process_id = uuid.uuid4().hex[:12]
        self._broadcast_count = 0
        self._background: set[asyncio.Task[None]] = set()

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        if self._connection is not None:
            return
        self._connection = await connect_cluster(
            self._urls,
            client_properties={"connection_name": f"smartgym:{self.topology.namespace}"},
        )
        self._publish_channel = await self._connection.channel(publisher_confirms=True, on_return_raises=True)
        await self._declare_exchanges(self._publish_channel)

    async def _declare_exchanges(self, channel: AbstractChannel) -> AbstractExchange:
        topology = self.topology
        unrouted = await channel.declare_exchange(
            topology.unrouted_exchange, aio_pika.ExchangeType.FANOUT, durable=True
        )
        unrouted_queue = await channel.declare_queue(
            topology.unrouted_queue,
            durable=True,
            # Events that nobody consumes yet: kept for inspection, oldest dropped first.
            arguments={"x-queue-type": "quorum", "x-max-length": 100_000},
        )
        await unrouted_queue.bind(unrouted)
        await channel.declare_exchange(topology.retry_exchange, aio_pika.ExchangeType.DIRECT, durable=True)
        await channel.declare_exchange(topology.parking_exchange, aio_pika.ExchangeType.DIRECT, durable=True)
        return await channel.declare_exchange(
            topology.events_exchange,
            aio_pika.ExchangeType.TOPIC,
            durable=True,
            arguments={"alternate-exchange": topology.unrouted_exchange},
        )

    async def close(self) -> None:
        for service in list(self._consumers):
            await self.stop_consuming(service)
        for channel in self._broadcast_channels:
            if not channel.is_closed:
                await channel.close()
        self._broadcast_channels.clear()
        if self._connection is not None:
            await self._connection.close()
        self._connection = None
        self._publish_channel = None

    @property
    def connection(self) -> AbstractRobustConnection | None:
        """The bus's connection (None before ``start``), for operator tools that open
        short channels of their own (:mod:`common.events.parking`)."""
        return self._connection

    def subscribed_services(self) -> list[str]:
        """The services consuming through this bus in this process."""
        return sorted(self._consumers)

    @property
    def confirm_timeout_s(self) -> float:
        return self._confirm_timeout_s

    def health(self) -> dict[str, Any]:
        connected = self._connection is not None and not self._connection.is_closed
        report: dict[str, Any] = {
            "ok": connected and self._connection is not None and self._connection.connected.is_set(),
            "kind": "rabbitmq",
        }
        if isinstance(self._connection, ClusterConnection):
            report["node"] = self._connection.node
        return report

    # -- publishing ------------------------------------------------------------------

    async def publish_many(self, messages: Sequence[OutgoingMessage]) -> None:
        if not messages:
            return
        if self._publish_channel is None:
            raise PublishError("bus not started")
        started = time.perf_counter()
        try:
            # A robust channel waits here for its connection to be back: bounded, so that a
            # relay whose channel never comes back logs failures and retries, instead of
            # waiting without a word.
            async with asyncio.timeout(self._confirm_timeout_s):
                channel = await self._publish_channel.get_underlay_channel()
        except aiormq.exceptions.ChannelInvalidStateError as exc:
            raise PublishError(f"publish channel unavailable: {exc}") from exc
        except TimeoutError as exc:
            raise PublishError(f"publish channel not back within {self._confirm_timeout_s}s") from exc
        if not isinstance(channel, aiormq.Channel):
            raise PublishError(f"unexpected channel type {type(channel).__name__}")
        try:
            results = await publish_confirmed(
                channel,
                exchange=self.topology.events_exchange,
                messages=[(message.routing_key, message.body, self._properties(message)) for message in messages],
                confirm_timeout_s=self._confirm_timeout_s,
            )
        except TimeoutError as exc:
            raise PublishError(f"{len(messages)} messages not confirmed within {self._confirm_timeout_s}s") from exc
        except aiormq.exceptions.AMQPError as exc:
            raise PublishError(f"{len(messages)} messages not published: {exc!r}") from exc
        failures = [result for result in results if isinstance(result, BaseException)]
        for message in messages:
            self._metrics.published.labels(event=message.routing_key).inc()
        self._metrics.publish_seconds.observe(time.perf_counter() - started)
        if any(_is_broker_nack(failure) for failure in failures):
            await self._renew_publish_channel(channel)
        if failures:
            raise PublishError(
                f"{len(failures)} of {len(messages)} messages not confirmed: {failures[0]!r}"
            ) from failures[0]

    async def _renew_publish_channel(self, nacked_on: aiormq.Channel) -> None:
        # A channel that opened while a quorum queue's leader was being replaced keeps
        # that queue's old leader and nacks every later publish, for as long as it lives
        # (seen on RabbitMQ 3.10 after a node loss); a fresh channel asks for the new
        # leader. Renewed at most once a second, and only while it is still the channel
        # that nacked, so concurrent rounds seeing the same nacks replace it once.
        publish_channel, connection = self._publish_channel, self._connection
        if publish_channel is None or connection is None:
            return
        now = time.monotonic()
        if now - self._publish_channel_renewed_at < 1.0:
            return
        with contextlib.suppress(aiormq.exceptions.ChannelInvalidStateError):
            if await publish_channel.get_underlay_channel() is not nacked_on:
                return
        self._publish_channel_renewed_at = now
        try:
            self._publish_channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        except (TimeoutError, aiormq.exceptions.AMQPError, ConnectionError) as exc:
            log.warning("publish channel not renewed after broker nacks: %r", exc)
            return
        log.warning("broker nacked publishes: publish channel renewed")
        with contextlib.suppress(aiormq.exceptions.AMQPError, ConnectionError, asyncio.TimeoutError, RuntimeError):
            await publish_channel.close()

    @staticmethod
    def _properties(message: OutgoingMessage) -> aiormq.spec.Basic.Properties:
        return aiormq.spec.Basic.Properties(
            content_type="application/json",
            delivery_mode=int(aio_pika.DeliveryMode.PERSISTENT),
            message_id=str(message.event_id),
            correlation_id=message.correlation_id,
            headers={TRACEPARENT: message.traceparent} if message.traceparent else None,
        )

    # -- consuming -------------------------------------------------------------------

    async def subscribe(self, subscriptions: Subscriptions) -> None:
        if self._connection is None:
            raise RuntimeError("bus not started")
        service = subscriptions.service
        if service in self._consumers:
            raise RuntimeError(f"{service} already subscribed")
        consumer = ServiceConsumer(self, subscriptions)
        await consumer.start(self._connection)
        self._consumers[service] = consumer

    async def broadcast(
        self,
        event_types: Sequence[type[Event]],
        handler: Callable[[Event], Awaitable[None]],
        *,
        on_connected: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        if self._connection is None:
            raise RuntimeError("bus not started")
        wanted = tuple(event_types)
        channel = await self._connection.channel()
        # A queue of this process's own: exclusive, gone when its connection is. Named by
        # us, not by the broker: after a reconnection the robust channel declares it again
        # under the same name, and a broker-made name (amq.gen-*) may not be re-declared.
        self._broadcast_count += 1
        name = f"{self.topology.namespace}.process.{self._process_id}.{self._broadcast_count}"
        queue = await channel.declare_queue(name, exclusive=True, auto_delete=True)
        for event_type in wanted:
            await queue.bind(self.topology.events_exchange, routing_key=event_type.routing_key())

        async def deliver(message: AbstractIncomingMessage) -> None:
            try:
                event = self._catalog.decode(message.body)
                if isinstance(event, wanted):
                    await handler(event)
            except Exception:
                log.exception("broadcast delivery dropped", extra={"routing_key": message.routing_key})

        await queue.consume(deliver, no_ack=True)
        self._broadcast_channels.append(channel)
        if on_connected is not None:
            connection = self._connection

            async def reconnected(*_: Any) -> None:
                # The queue was re-declared and re-bound before this runs; what was
                # published in between is gone, so the caller re-reads the state.
                task = asyncio.get_running_loop().create_task(_guarded(on_connected), name="bus-reconnected")
                self._background.add(task)
                task.add_done_callback(self._background.discard)

            connection.reconnect_callbacks.add(reconnected)
            await on_connected()

    async def stop_consuming(self, service: str) -> None:
        consumer = self._consumers.pop(service, None)
        if consumer is not None:
            await consumer.stop()

    async def declare_service_queues(self, channel: AbstractChannel, subscriptions: Subscriptions) -> AbstractQueue:
        topology, service = self.topology, subscriptions.service
        parking = await channel.declare_queue(
            topology.parking_queue(service), durable=True, arguments={"x-queue-type": "quorum"}
        )
        await parking.bind(topology.parking_exchange, routing_key=service)
        main_queue = await channel.declare_queue(
            topology.queue(service),
            durable=True,
            arguments={
                **QUORUM_DEAD_LETTER_ARGS,
                "x-delivery-limit": topology.delivery_limit,
                "x-dead-letter-exchange": topology.parking_exchange,
                "x-dead-letter-routing-key": service,
            },
        )
        for delay_ms in topology.retry_delays_ms:
            retry = await channel.declare_queue(
                topology.retry_queue(service, delay_ms),
                durable=True,
                arguments={
                    **QUORUM_DEAD_LETTER_ARGS,
                    "x-message-ttl": delay_ms,
                    # The default exchange routes by queue name: straight back home.
                    "x-dead-letter-exchange": "",
                    "x-dead-letter-routing-key": topology.queue(service),
                },
            )
            await retry.bind(topology.retry_exchange, routing_key=f"{service}.{delay_ms}")
        for routing_key in subscriptions.routing_keys:
            await main_queue.bind(topology.events_exchange, routing_key=routing_key)
        return main_queue


async def _guarded(callback: Callable[[], Awaitable[None]]) -> None:
    try:
        await callback()
    except Exception:
        log.exception("reconnection callback failed")


def _is_broker_nack(failure: BaseException) -> bool:
    return isinstance(failure, aiormq.exceptions.DeliveryError) and isinstance(failure.frame, Basic.Nack)
