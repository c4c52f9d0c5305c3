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
Consuming: manual acks, an ack only after the handler's effects committed, bounded
prefetch. A handler that raises never drops the message: it is retried, then parked.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
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

from common.context import bind_correlation_id, reset_correlation_id, sanitize_correlation_id
from common.events.bus import PublishError, Subscriptions
from common.events.envelope import EventCatalog, MalformedEvent, OutgoingMessage
from common.observability import Metrics

log = logging.getLogger(__name__)

ATTEMPT_HEADER = "x-smartgym-attempt"
ERROR_HEADER = "x-smartgym-error"
PARKED_FROM_HEADER = "x-smartgym-parked-from"
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
        url: str,
        *,
        catalog: EventCatalog,
        metrics: Metrics,
        namespace: str = "smartgym",
        prefetch: int = 64,
        max_attempts: int = 5,
        retry_delays_ms: Sequence[int] = (200, 1_000, 5_000),
        delivery_limit: int = 20,
        confirm_timeout_s: float = 10.0,
    ) -> None:
        self._url = url
        self._catalog = catalog
        self._metrics = metrics
        self._prefetch = prefetch
        self._max_attempts = max_attempts
        self._confirm_timeout_s = confirm_timeout_s
        self.topology = Topology(namespace, retry_delays_ms, delivery_limit)
        self._connection: AbstractRobustConnection | None = None
        self._publish_channel: AbstractChannel | None = None
        self._events: AbstractExchange | None = None
        self._consumers: dict[str, _ServiceConsumer] = {}

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        if self._connection is not None:
            return
        self._connection = await aio_pika.connect_robust(
            self._url,
            client_properties={"connection_name": f"smartgym:{self.topology.namespace}"},
        )
        self._publish_channel = await self._connection.channel(publisher_confirms=True, on_return_raises=True)
        self._events = await self._declare_exchanges(self._publish_channel)

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
        if self._connection is not None:
            await self._connection.close()
        self._connection = None
        self._publish_channel = None
        self._events = None

    def health(self) -> dict[str, Any]:
        connected = self._connection is not None and not self._connection.is_closed
        return {
            "ok": connected and self._connection is not None and self._connection.connected.is_set(),
            "kind": "rabbitmq",
        }

    # -- publishing ------------------------------------------------------------------

    async def publish_many(self, messages: Sequence[OutgoingMessage]) -> None:
        if not messages:
            return
        exchange = self._events
        if exchange is None:
            raise PublishError("bus not started")
        started = time.perf_counter()
        results = await asyncio.gather(
            *(self._publish_one(exchange, message) for message in messages), return_exceptions=True
        )
        failures = [result for result in results if isinstance(result, BaseException)]
        for message in messages:
            self._metrics.published.labels(event=message.routing_key).inc()
        self._metrics.publish_seconds.observe(time.perf_counter() - started)
        if failures:
            raise PublishError(
                f"{len(failures)} of {len(messages)} messages not confirmed: {failures[0]!r}"
            ) from failures[0]

    async def _publish_one(self, exchange: AbstractExchange, message: OutgoingMessage) -> None:
        confirmation = await exchange.publish(
            aio_pika.Message(
                message.body,
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                message_id=str(message.event_id),
                correlation_id=message.correlation_id,
            ),
            routing_key=message.routing_key,
            mandatory=True,
            timeout=self._confirm_timeout_s,
        )
        if not isinstance(confirmation, Basic.Ack):
            raise PublishError(f"broker answered {confirmation!r} for {message.event_id}")

    # -- consuming -------------------------------------------------------------------

    async def subscribe(self, subscriptions: Subscriptions) -> None:
        if self._connection is None:
            raise RuntimeError("bus not started")
        service = subscriptions.service
        if service in self._consumers:
            raise RuntimeError(f"{service} already subscribed")
        consumer = _ServiceConsumer(self, subscriptions)
        await consumer.start(self._connection)
        self._consumers[service] = consumer

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


class _ServiceConsumer:
    """Consumes one service's queue and applies the retry/park policy."""

    def __init__(self, bus: RabbitMQBus, subscriptions: Subscriptions) -> None:
        self._bus = bus
        self._subscriptions = subscriptions
        self._channel: AbstractChannel | None = None
        self._queue: AbstractQueue | None = None
        self._consumer_tag: str | None = None
        self._in_flight: set[asyncio.Task[Any]] = set()
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def service(self) -> str:
        return self._subscriptions.service

    async def start(self, connection: AbstractRobustConnection) -> None:
        # A channel of its own: a publish confirm storm never delays acks, and the
        # robust connection re-declares queue and consumer after a broker restart.
        self._channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        await self._channel.set_qos(prefetch_count=self._bus._prefetch)
        self._queue = await self._bus.declare_service_queues(self._channel, self._subscriptions)
        self._consumer_tag = await self._queue.consume(self._on_message, no_ack=False)

    async def stop(self) -> None:
        if self._queue is not None and self._consumer_tag is not None:
            try:
                await self._queue.cancel(self._consumer_tag)
            except (aiormq.AMQPError, aio_pika.exceptions.ChannelInvalidStateError, ConnectionError):
                log.warning("could not cancel consumer of %s; unacked messages return to the queue", self.service)
        # Handlers in flight finish and ack before the channel closes: a graceful stop
        # never forces a redelivery.
        await self._idle.wait()
        if self._channel is not None and not self._channel.is_closed:
            await self._channel.close()

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._in_flight.add(task)
            self._idle.clear()
        try:
            await self._handle(message)
        finally:
            if task is not None:
                self._in_flight.discard(task)
                if not self._in_flight:
                    self._idle.set()

    async def _handle(self, message: AbstractIncomingMessage) -> None:
        metrics = self._bus._metrics
        headers = message.headers or {}
        attempt = _int_header(headers.get(ATTEMPT_HEADER), default=1)
        token = bind_correlation_id(sanitize_correlation_id(message.correlation_id))
        try:
            try:
                event = self._bus._catalog.decode(message.body)
            except MalformedEvent as exc:
                metrics.consumed.labels(event=message.routing_key or "?", outcome="malformed").inc()
                log.error("malformed event parked", extra={"service": self.service, "reason": exc.reason})
                await self._park(message, f"malformed: {exc.reason}")
                return
            handlers = self._subscriptions.handlers_for(event)
            if not handlers:
                metrics.consumed.labels(event=event.routing_key(), outcome="unhandled").inc()
                await self._park(message, f"no handler for {event.routing_key()} in {self.service}")
                return
            started = time.perf_counter()
            try:
                for subscription in handlers:
                    await subscription.handler(event)
            except Exception as exc:
                metrics.consumed.labels(event=event.routing_key(), outcome="failed").inc()
                reason = f"{type(exc).__name__}: {exc}"[:500]
                if attempt >= self._bus._max_attempts:
                    log.error(
                        "event parked after %d attempts",
                        attempt,
                        extra={"service": self.service, "event_id": str(event.event_id), "reason": reason},
                    )
                    await self._park(message, reason)
                else:
                    log.warning(
                        "handler failed, retrying",
                        exc_info=True,
                        extra={"service": self.service, "event_id": str(event.event_id), "attempt": attempt},
                    )
                    await self._retry(message, attempt, reason)
                return
            metrics.consumed.labels(event=event.routing_key(), outcome="ok").inc()
            metrics.handle_seconds.observe(time.perf_counter() - started)
            await message.ack()
        finally:
            reset_correlation_id(token)

    async def _retry(self, message: AbstractIncomingMessage, attempt: int, reason: str) -> None:
        topology = self._bus.topology
        delay_ms = topology.retry_delay_ms(attempt)
        await self._republish(
            message,
            exchange=topology.retry_exchange,
            routing_key=f"{self.service}.{delay_ms}",
            headers={ATTEMPT_HEADER: attempt + 1, ERROR_HEADER: reason},
        )

    async def _park(self, message: AbstractIncomingMessage, reason: str) -> None:
        self._bus._metrics.parked.labels(service=self.service).inc()
        await self._republish(
            message,
            exchange=self._bus.topology.parking_exchange,
            routing_key=self.service,
            headers={ERROR_HEADER: reason[:1000], PARKED_FROM_HEADER: self._bus.topology.queue(self.service)},
        )

    async def _republish(
        self, message: AbstractIncomingMessage, *, exchange: str, routing_key: str, headers: dict[str, Any]
    ) -> None:
        # Confirmed copy first, ack second: a crash in between duplicates, never loses.
        assert self._channel is not None
        target = await self._channel.get_exchange(exchange, ensure=False)
        await target.publish(
            aio_pika.Message(
                message.body,
                content_type=message.content_type,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                message_id=message.message_id,
                correlation_id=message.correlation_id,
                headers={**(message.headers or {}), **headers},
            ),
            routing_key=routing_key,
            mandatory=True,
        )
        await message.ack()


def _int_header(value: Any, *, default: int) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return default
