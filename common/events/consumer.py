"""One service's consumer on RabbitMQ: raw aiormq deliveries, batches applied in one
transaction, acknowledgements batched with ``multiple=True``.

Why not aio-pika's ``queue.consume``: every delivery there becomes an ``IncomingMessage``
(properties and headers copied into Python objects) and is acked with its own frame; at
thousands of events per second that bookkeeping cost more than the broker itself. Here a
delivery stays the frame aiormq parsed, and one ``basic.ack(multiple=True)`` settles a
whole committed batch (see docs/adr/0042-lean-bus-consumer-and-batched-acks.md).

The guarantee is unchanged — an ack only after the message's effects committed (or its
retry/parking copy was confirmed):

* ``multiple=True`` acks *every* earlier delivery on the channel, so it is only sent up to
  the highest tag below which everything is settled (:class:`_AckWatermark`); a batch
  that finishes before an older one waits for it.
* Delivery tags belong to one channel. After a reconnect, acks for the old channel's
  messages are dropped (the broker redelivers them; the inbox absorbs the repeat), and a
  fresh watermark starts with the new channel.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractQueue, AbstractRobustChannel, AbstractRobustConnection
from aiormq.abc import DeliveredMessage

from common.context import bind_correlation_id, reset_correlation_id, sanitize_correlation_id
from common.events.bus import Subscriptions
from common.events.envelope import Event, MalformedEvent
from common.tracing import TRACEPARENT

if TYPE_CHECKING:
    from common.events.rabbitmq import RabbitMQBus

log = logging.getLogger(__name__)

ATTEMPT_HEADER = "x-smartgym-attempt"
ERROR_HEADER = "x-smartgym-error"
PARKED_FROM_HEADER = "x-smartgym-parked-from"
# When it was parked (ms since the epoch): the broker keeps no arrival time an operator could read.
PARKED_AT_HEADER = "x-smartgym-parked-at"
# The longest a gathered batch waits for the one being applied before it (see _gather).
GATHER_MAX_S = 0.02
# Frames a channel's queue may hold per prefetched delivery: a delivery is three (method,
# header, body), and the slack covers publish confirms and returns on the same channel.
FRAMES_PER_DELIVERY = 4
_CHANNEL_GONE = (aiormq.AMQPError, aio_pika.exceptions.ChannelInvalidStateError, ConnectionError, RuntimeError)


class _AckWatermark:
    """Acks of one channel, sent as ``multiple=True`` up to the highest tag below which
    every delivery is settled (acked or handed to a retry/parking queue)."""

    def __init__(self, channel: aiormq.abc.AbstractChannel) -> None:
        self.channel = channel
        self._outstanding: deque[int] = deque()  # delivery order
        self._settled: set[int] = set()
        # Acks go out in tag order: a multiple-ack below one already sent would name an
        # unknown tag, and the broker closes the channel for that.
        self.lock = asyncio.Lock()
        self.acked = 0

    def delivered(self, tag: int) -> None:
        self._outstanding.append(tag)

    def settle(self, tags: Sequence[int]) -> int | None:
        """Mark ``tags`` settled; returns the tag to ack with ``multiple=True``, if any."""
        self._settled.update(tags)
        highest = None
        outstanding, settled = self._outstanding, self._settled
        while outstanding and outstanding[0] in settled:
            highest = outstanding.popleft()
            settled.discard(highest)
        return highest

    @property
    def pending(self) -> int:
        return len(self._outstanding)


@dataclass(frozen=True)
class _Delivery:
    message: DeliveredMessage
    watermark: _AckWatermark

    @property
    def tag(self) -> int:
        return _tag_of(self.message)

    @property
    def properties(self) -> aiormq.spec.Basic.Properties:
        return self.message.header.properties

    @property
    def routing_key(self) -> str:
        return self.message.routing_key or "?"


class ServiceConsumer:
    """Consumes one service's queue and applies the retry/park policy.

    Deliveries wait in a local queue; a few workers take what is ready (up to
    ``batch_size``) and, when the service has a batch handler, apply it in one
    transaction and settle the batch with one ack. A batch that fails is replayed one
    message at a time, so a single poison message is retried and parked on its own
    without holding back the rest.
    """

    def __init__(self, bus: RabbitMQBus, subscriptions: Subscriptions) -> None:
        self._bus = bus
        self._subscriptions = subscriptions
        self._channel: AbstractRobustChannel | None = None
        self._queue: AbstractQueue | None = None
        self._consumer_tag: str | None = None
        self._underlay: aiormq.abc.AbstractChannel | None = None
        self._watermark: _AckWatermark | None = None
        self._ready: asyncio.Queue[_Delivery] = asyncio.Queue()
        self._workers: list[asyncio.Task[None]] = []
        self._busy = 0
        self._gathering_lock = asyncio.Lock()
        self._gathered = 0  # deliveries held by the worker gathering a batch
        self._idle = asyncio.Event()
        self._idle.set()
        self._stopping = False

    @property
    def service(self) -> str:
        return self._subscriptions.service

    async def start(self, connection: AbstractRobustConnection) -> None:
        # A channel of its own: a publish confirm storm never delays acks. The robust
        # channel re-declares queues and QoS after a broker restart; the consumer itself
        # is ours (raw aiormq), so it is re-registered on every reopen.
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        assert isinstance(channel, aio_pika.RobustChannel)
        self._channel = channel
        await channel.set_qos(prefetch_count=self._bus._prefetch)
        self._queue = await self._bus.declare_service_queues(channel, self._subscriptions)
        self._workers = [
            asyncio.create_task(self._work(), name=f"bus-consumer:{self.service}:{n}")
            for n in range(self._bus._workers)
        ]
        channel.reopen_callbacks.add(self._on_reopen)
        await self._consume()

    async def _on_reopen(self, _channel: Any) -> None:
        if not self._stopping:
            await self._consume()

    async def _consume(self) -> None:
        assert self._channel is not None
        assert self._queue is not None
        underlay = await self._channel.get_underlay_channel()
        _widen_frame_buffer(underlay, self._bus._prefetch)
        self._underlay = underlay
        self._watermark = _AckWatermark(underlay)
        watermark = self._watermark
        ready = self._ready

        async def deliver(message: DeliveredMessage) -> None:
            watermark.delivered(_tag_of(message))
            ready.put_nowait(_Delivery(message, watermark))

        answer = await underlay.basic_consume(self._queue.name, deliver, no_ack=False)
        self._consumer_tag = answer.consumer_tag

    async def stop(self) -> None:
        self._stopping = True
        if self._underlay is not None and self._consumer_tag is not None:
            try:
                await self._underlay.basic_cancel(self._consumer_tag)
            except _CHANNEL_GONE:
                log.warning("could not cancel consumer of %s; unacked messages return to the queue", self.service)
        # Messages already delivered finish and are acked before the channel closes:
        # a graceful stop never forces a redelivery.
        while not (self._ready.empty() and self._busy == 0 and self._gathered == 0):
            self._idle.clear()
            await self._idle.wait()
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        if self._channel is not None and not self._channel.is_closed:
            await self._channel.close()

    async def _work(self) -> None:
        while True:
            # One worker gathers at a time, so a burst becomes a few full batches rather
            # than as many small ones as there are idle workers.
            async with self._gathering_lock:
                batch = await self._gather()
                self._busy += 1
                self._gathered = 0
            try:
                await self._handle_batch(batch)
            except Exception:
                # Unacked messages come back from the broker; nothing is lost.
                log.exception("consumer batch failed unexpectedly", extra={"service": self.service})
            finally:
                self._busy -= 1
                if self._busy == 0 and self._ready.empty():
                    self._idle.set()

    async def _gather(self) -> list[_Delivery]:
        """The next batch: what is ready, after waiting ``linger`` for the rest of a burst
        (deliveries arrive a few at a time; without it an idle worker would commit each on
        its own), and while another batch is being applied, until it is done or the batch
        is full, for at most ``GATHER_MAX_S``: the batch then commits right behind it."""
        batch_size, linger_s = self._bus._batch_size, self._bus._batch_linger_s
        batch = [await self._ready.get()]
        self._gathered = 1
        loop = asyncio.get_running_loop()
        started = loop.time()
        while True:
            while len(batch) < batch_size and not self._ready.empty():
                batch.append(self._ready.get_nowait())
            self._gathered = len(batch)
            if len(batch) >= batch_size or not linger_s:
                return batch
            waited = loop.time() - started
            if waited >= GATHER_MAX_S or (waited >= linger_s and self._busy == 0):
                return batch
            await asyncio.sleep(linger_s)

    async def _handle_batch(self, batch: list[_Delivery]) -> None:
        metrics = self._bus._metrics
        decoded: list[tuple[_Delivery, Event]] = []
        for delivery in batch:
            try:
                event = self._bus._catalog.decode(delivery.message.body)
            except MalformedEvent as exc:
                metrics.consumed.labels(event=delivery.routing_key, outcome="malformed").inc()
                log.error("malformed event parked", extra={"service": self.service, "reason": exc.reason})
                await self._park(delivery, f"malformed: {exc.reason}")
                continue
            # The publish span's context, from the headers (the envelope's is the cause's).
            event.in_trace((delivery.properties.headers or {}).get(TRACEPARENT))
            if not self._subscriptions.handlers_for(event):
                metrics.consumed.labels(event=event.routing_key(), outcome="unhandled").inc()
                await self._park(delivery, f"no handler for {event.routing_key()} in {self.service}")
                continue
            decoded.append((delivery, event))
        apply_batch = self._subscriptions.batch_handler
        if apply_batch is not None and len(decoded) > 1:
            started = time.perf_counter()
            try:
                await apply_batch([event for _, event in decoded])
            except Exception:
                log.warning(
                    "batch of %d failed; replaying one by one",
                    len(decoded),
                    exc_info=True,
                    extra={"service": self.service},
                )
            else:
                metrics.handle_seconds.observe((time.perf_counter() - started) / len(decoded))
                for routing_key, count in Counter(event.routing_key() for _, event in decoded).items():
                    metrics.consumed.labels(event=routing_key, outcome="ok").inc(count)
                await self._settle([delivery for delivery, _ in decoded])
                return
        for delivery, event in decoded:
            await self._handle_one(delivery, event)

    async def _handle_one(self, delivery: _Delivery, event: Event) -> None:
        metrics = self._bus._metrics
        attempt = _int_header((delivery.properties.headers or {}).get(ATTEMPT_HEADER), default=1)
        token = bind_correlation_id(sanitize_correlation_id(event.correlation_id))
        try:
            started = time.perf_counter()
            try:
                for subscription in self._subscriptions.handlers_for(event):
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
                    await self._park(delivery, reason)
                else:
                    log.warning(
                        "handler failed, retrying",
                        exc_info=True,
                        extra={"service": self.service, "event_id": str(event.event_id), "attempt": attempt},
                    )
                    await self._retry(delivery, attempt, reason)
                return
            metrics.consumed.labels(event=event.routing_key(), outcome="ok").inc()
            metrics.handle_seconds.observe(time.perf_counter() - started)
            await self._settle([delivery])
        finally:
            reset_correlation_id(token)

    async def _settle(self, deliveries: Sequence[_Delivery]) -> None:
        """Ack what is now settled: one frame for the whole watermark advance."""
        by_channel: dict[int, tuple[_AckWatermark, list[int]]] = {}
        for delivery in deliveries:
            by_channel.setdefault(id(delivery.watermark), (delivery.watermark, []))[1].append(delivery.tag)
        for watermark, tags in by_channel.values():
            if watermark is not self._watermark:
                # The channel these came on is gone: the broker redelivers them and the
                # idempotent consumer recognises the repeat.
                continue
            async with watermark.lock:
                highest = watermark.settle(tags)
                if highest is None or highest <= watermark.acked:
                    continue
                watermark.acked = highest
                try:
                    await watermark.channel.basic_ack(highest, multiple=True)
                except _CHANNEL_GONE:
                    log.warning(
                        "ack lost with its channel; the messages will be redelivered", extra={"service": self.service}
                    )

    async def _retry(self, delivery: _Delivery, attempt: int, reason: str) -> None:
        topology = self._bus.topology
        delay_ms = topology.retry_delay_ms(attempt)
        await self._republish(
            delivery,
            exchange=topology.retry_exchange,
            routing_key=f"{self.service}.{delay_ms}",
            headers={ATTEMPT_HEADER: attempt + 1, ERROR_HEADER: reason},
        )

    async def _park(self, delivery: _Delivery, reason: str) -> None:
        self._bus._metrics.parked.labels(service=self.service).inc()
        await self._republish(
            delivery,
            exchange=self._bus.topology.parking_exchange,
            routing_key=self.service,
            headers={
                ERROR_HEADER: reason[:1000],
                PARKED_FROM_HEADER: self._bus.topology.queue(self.service),
                PARKED_AT_HEADER: int(time.time() * 1000),
            },
        )

    async def _republish(
        self, delivery: _Delivery, *, exchange: str, routing_key: str, headers: dict[str, Any]
    ) -> None:
        # Confirmed copy first, ack second: a crash in between duplicates, never loses.
        channel: AbstractChannel | None = self._channel
        assert channel is not None
        properties = delivery.properties
        target = await channel.get_exchange(exchange, ensure=False)
        await target.publish(
            aio_pika.Message(
                delivery.message.body,
                content_type=properties.content_type,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                message_id=properties.message_id,
                correlation_id=properties.correlation_id,
                headers={**(properties.headers or {}), **headers},
            ),
            routing_key=routing_key,
            mandatory=True,
        )
        await self._settle([delivery])


def _widen_frame_buffer(channel: aiormq.abc.AbstractChannel, prefetch: int) -> None:
    """Let the channel's frame queue hold a whole prefetch window.

    aiormq hands frames from the connection's reader to the channel's through a queue of
    10 (a delivery is 3 frames), and aio-pika gives no way to size it. A full queue parks
    the reader until the next loop iteration, so a consumer took in ~3 deliveries per
    iteration: in a process that is also busy with other work (notification sends pushes
    on the same loop) the broker's window sat a fifth used and intake, not the database,
    set the pace. The prefetch still bounds what the broker sends, so memory stays bounded.
    """
    frames = getattr(channel, "frames", None)
    if isinstance(frames, asyncio.Queue) and 0 < frames.maxsize < FRAMES_PER_DELIVERY * prefetch:
        # asyncio.Queue checks _maxsize on every put, so raising it on a live queue is safe.
        frames._maxsize = FRAMES_PER_DELIVERY * prefetch  # type: ignore[attr-defined]


def _tag_of(message: DeliveredMessage) -> int:
    delivery = message.delivery
    assert isinstance(delivery, aiormq.spec.Basic.Deliver)
    assert isinstance(delivery.delivery_tag, int)
    return delivery.delivery_tag


def _int_header(value: Any, *, default: int) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return default
