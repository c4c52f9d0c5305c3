"""The parking lot on RabbitMQ.

Everything goes through the broker protocol on short channels of the bus's own connection
(docs/adr/0046-bus-backlog-and-parking-lot-through-the-broker-protocol.md): passive
``queue.declare`` reads a queue's ready count and consumers; a short-lived consumer with
manual acks (its prefetch the number wanted) reads parked messages, and closing the
channel returns them untouched. The management plugin would add unacked counts but is not
part of the platform's broker.

A replay is a copy first, an ack second, on one channel with publisher confirms:

* the parked message is taken unacked, which hides it from every other reader until this
  channel settles it: two operators replaying the same message at once cannot both take
  it;
* its copy goes to the queue it was parked from (the service's own queue, through the
  default exchange, as the retry path does), never to the events exchange: the other
  services that took the event already must not get it again;
* only once the broker confirmed the copy is the parked message acked. A failure before
  that closes the channel and the message stays parked; a crash between the confirm and
  the ack leaves it parked *and* replayed, which the idempotent consumer absorbs.

The copy starts afresh: attempt count, error and dead-letter headers are dropped, a replay
count and the operator who asked are added.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import logging
import re
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from common.events.consumer import ATTEMPT_HEADER, ERROR_HEADER, PARKED_AT_HEADER, PARKED_FROM_HEADER
from common.events.parking import (
    KEPT_SHOWN,
    Backlog,
    BusUnavailable,
    NotParked,
    ParkedDetail,
    ParkedEvent,
    Replayed,
    ReplayRefused,
    ServiceBacklog,
    detailed,
    forgotten,
    grouped,
    parked_event,
    refuse_if_forgotten,
)

if TYPE_CHECKING:
    import aiormq.abc

    from common.events.rabbitmq import RabbitMQBus

log = logging.getLogger(__name__)

REPLAYS_HEADER = "x-smartgym-replays"
REPLAYED_BY_HEADER = "x-smartgym-replayed-by"
HEADER_CHARS = 500
REPLAY_ALL_SCAN_S = 3.0
# What a replayed copy must not carry: it starts with a fresh retry budget and is not a
# dead letter (a copy still marked with x-death would look parked to the next reader).
_DROPPED_ON_REPLAY = frozenset(
    {
        ATTEMPT_HEADER,
        ERROR_HEADER,
        PARKED_FROM_HEADER,
        PARKED_AT_HEADER,
        "x-death",
        "x-first-death-exchange",
        "x-first-death-queue",
        "x-first-death-reason",
        "x-last-death-exchange",
        "x-last-death-queue",
        "x-last-death-reason",
        "x-delivery-count",
    }
)
_MESSAGE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,80}$")


class RabbitParkingLot:
    kind = "rabbitmq"

    def __init__(self, bus: RabbitMQBus, *, scan_limit: int, timeout_s: float) -> None:
        self._bus = bus
        self._scan_limit = scan_limit
        self._timeout_s = timeout_s
        self._locks: dict[str, asyncio.Lock] = {}

    def known_services(self, *, configured: Sequence[str]) -> list[str]:
        return sorted(set(configured) | set(self._bus.subscribed_services()))

    async def _channel(self, *, confirms: bool = False) -> aiormq.abc.AbstractChannel:
        connection = self._bus.connection
        transport = getattr(connection, "transport", None) if connection is not None else None
        if connection is None or connection.is_closed or transport is None:
            raise BusUnavailable("not connected to the broker")
        try:
            channel: aiormq.abc.AbstractChannel = await transport.connection.channel(
                publisher_confirms=confirms, on_return_raises=confirms
            )
        except _amqp_errors() as exc:
            raise BusUnavailable(f"no channel: {exc!r}") from exc
        return channel

    async def backlog(self, *, services: Sequence[str]) -> Backlog:
        topology = self._bus.topology
        try:
            async with asyncio.timeout(self._timeout_s), _Passive(self) as passive:
                rows = []
                for service in services:
                    main = await passive.declare(topology.queue(service))
                    if main is None:
                        rows.append(ServiceBacklog(service, topology.queue(service), False, 0, None, 0, 0, 0))
                        continue
                    async with self._turn_to_count(service):  # not while a reader holds some
                        parking = await passive.declare(topology.parking_queue(service))
                    retrying = 0
                    for delay_ms in topology.retry_delays_ms:
                        retry = await passive.declare(topology.retry_queue(service, delay_ms))
                        retrying += retry.message_count if retry is not None else 0
                    rows.append(
                        ServiceBacklog(
                            service=service,
                            queue=topology.queue(service),
                            exists=True,
                            ready=main.message_count,
                            unacked=None,
                            consumers=main.consumer_count,
                            retrying=retrying,
                            parked=parking.message_count if parking is not None else 0,
                        )
                    )
                unrouted = await passive.declare(topology.unrouted_queue)
        except TimeoutError as exc:
            raise BusUnavailable("the broker did not answer in time") from exc
        return Backlog(self.kind, rows, unrouted.message_count if unrouted is not None else None)

    async def parked(self, *, service: str, limit: int) -> list[ParkedEvent]:
        messages = await self._read(service, limit=min(limit, self._scan_limit))
        return grouped([_rabbit_parked(service, message) for message in messages])[:limit]

    async def inspect(self, *, service: str, parked_id: str) -> ParkedDetail:
        for attempt in range(_FIND_ATTEMPTS):
            if attempt:
                await asyncio.sleep(_FIND_PAUSE_S)
            messages = await self._read(service, limit=self._scan_limit)
            matching = [message for message in messages if _parked_id(message) == parked_id]
            if matching:
                return replace(_rabbit_detail(service, matching[0]), copies=len(matching))
        raise NotParked(f"no parked message {parked_id} of {service}")

    async def _read(self, service: str, *, limit: int) -> list[aiormq.abc.DeliveredMessage]:
        """Up to ``limit`` parked messages, left in place: the channel closes unacked."""
        queue = self._bus.topology.parking_queue(service)
        async with self._lock(service):
            try:
                async with asyncio.timeout(self._timeout_s):
                    channel = await self._channel()
                    try:
                        messages, ready = await _get_many(channel, queue, limit)
                    finally:
                        await _close(channel)
            except TimeoutError as exc:
                raise BusUnavailable("the broker did not answer in time") from exc
            if messages:
                # Outside the request's timeout: what was read is answered even if the wait is long.
                await self._counted_again(queue, ready)
        return messages

    def _lock(self, service: str) -> asyncio.Lock:
        """One reader of a service's lot at a time in this process: what one holds unacked,
        the others would count as gone."""
        return self._locks.setdefault(service, asyncio.Lock())

    @contextlib.asynccontextmanager
    async def _turn_to_count(self, service: str) -> AsyncIterator[None]:
        """The lot's lock for a count, waited for briefly: a replay of everything may hold it
        for seconds, and a backlog that late is worse than one short by the messages in flight."""
        lock = self._lock(service)
        acquired = False
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_COUNT_TURN_WAIT_S):
                acquired = await lock.acquire()
        try:
            yield
        finally:
            if acquired:
                lock.release()

    async def _counted_again(self, queue: str, expected: int, *, within_s: float | None = None) -> None:
        """Wait until ``queue`` counts ``expected`` messages ready again.

        A quorum queue takes back what a closed channel held only once its log has committed
        the return; a backlog or replay asked for in the meantime would count them gone (the
        operations page asks for the backlog and the list at the same moment). Bounded: a
        reader elsewhere may hold some, and the lot may shrink meanwhile."""
        pause = _RETURN_FIRST_PAUSE_S
        with contextlib.suppress(TimeoutError, BusUnavailable):
            async with asyncio.timeout(_RETURN_WAIT_S if within_s is None else within_s), _Passive(self) as passive:
                while True:
                    counted = await passive.declare(queue)
                    if counted is None or (counted.message_count or 0) >= expected:
                        return
                    await asyncio.sleep(pause)
                    pause = min(2 * pause, _RETURN_MAX_PAUSE_S)

    async def replay(
        self, *, service: str, parked_id: str, requested_by: str, remembered_since: datetime | None
    ) -> ParkedEvent:
        queue = self._bus.topology.parking_queue(service)
        copies: list[Any] = []
        expected: int | None = None  # the count to wait for after the last read, if any held
        async with self._lock(service):
            try:
                async with asyncio.timeout(self._timeout_s):
                    await self._target_ready(service)
                    for attempt in range(_FIND_ATTEMPTS):
                        if attempt:
                            if expected is not None:
                                # Its next read takes as many as are counted: the last one's
                                # must be back. Bounded by the pause, as another replica may
                                # have taken some: a 404 must come before the gateway's timeout.
                                await self._counted_again(queue, expected, within_s=_FIND_PAUSE_S)
                            await asyncio.sleep(_FIND_PAUSE_S)
                        channel = await self._channel(confirms=True)
                        acked = 0
                        try:
                            messages, ready = await _get_many(channel, queue, self._scan_limit)
                            copies = [m for m in messages if _parked_id(m) == parked_id]
                            if copies:
                                # Refused before the copy: closing the channel leaves it parked.
                                refuse_if_forgotten(
                                    _rabbit_parked(service, copies[0]), remembered_since=remembered_since
                                )
                                # Copies of one event (published twice by a relay that crashed
                                # before marking it) are one event to its idempotent consumer:
                                # one replay settles them all.
                                await self._send_copy(channel, service, copies[0], requested_by)
                                for message in copies:
                                    await _ack(channel, message, service)
                                    acked += 1
                        finally:
                            await _close(channel)
                        expected = ready - acked if len(messages) > acked else None
                        if copies:
                            break
            except TimeoutError as exc:
                raise BusUnavailable("the broker did not answer in time") from exc
            if expected is not None:
                # Outside the timeout: a replay done is answered as done, however long this takes.
                await self._counted_again(queue, expected)
        if not copies:
            raise NotParked(f"no parked message {parked_id} of {service}")
        replayed = replace(_rabbit_parked(service, copies[0]), copies=len(copies))
        log.warning(
            "parked event replayed",
            extra={"service": service, "parked_id": parked_id, "requested_by": requested_by, "copies": len(copies)},
        )
        return replayed

    async def replay_all(
        self, *, service: str, limit: int, requested_by: str, remembered_since: datetime | None
    ) -> Replayed:
        queue = self._bus.topology.parking_queue(service)
        replayed: list[ParkedEvent] = []
        kept: list[ParkedEvent] = []
        async with self._lock(service):
            # A get is a round trip: the scan ends in time for the operator's request to be
            # answered (through the gateway's timeout, with the wait for the kept ones to be
            # counted again); the rest waits for the next request.
            scan_ends = asyncio.get_running_loop().time() + REPLAY_ALL_SCAN_S
            try:
                async with asyncio.timeout(self._timeout_s):
                    await self._target_ready(service)
                    channel = await self._channel(confirms=True)
            except TimeoutError as exc:
                raise BusUnavailable("the broker did not answer in time") from exc
            stopped: tuple[type[BaseException], ...] = (TimeoutError, BusUnavailable, *_amqp_errors())
            in_hand = False
            ready = 0
            try:
                # Only what is parked now: a replayed message that fails again is parked
                # anew at the tail and must wait for the next request, not loop here. The
                # kept ones do not count against the limit (a service broken for weeks
                # would otherwise keep its newer events behind them), but bound the scan.
                ready = await _ready_count(channel, queue)
                parked_now = min(ready, limit + self._scan_limit)
                for _ in range(parked_now):
                    if len(replayed) >= limit or asyncio.get_running_loop().time() > scan_ends:
                        break
                    async with asyncio.timeout(self._timeout_s):
                        message = await channel.basic_get(queue, no_ack=False)
                        if _is_empty(message):
                            break
                        in_hand = True
                        item = _rabbit_parked(service, message)
                        if forgotten(item, remembered_since=remembered_since):
                            # Held unacked until the channel closes, so the next get takes
                            # the next message; the close puts it back where it was.
                            kept.append(item)
                            in_hand = False
                            continue
                        await self._send_copy(channel, service, message, requested_by)
                        await _ack(channel, message, service)
                        in_hand = False
                    replayed.append(item)
            except stopped as exc:
                # What went back stays gone from the lot; the rest (the message in hand
                # included, unacked) stays parked. Say how far it got if it got anywhere.
                if not replayed:
                    if isinstance(exc, BusUnavailable):
                        raise
                    raise BusUnavailable(f"the broker did not complete the replay: {exc!r}") from exc
                log.warning("replay of every parked event stopped early", exc_info=True)
            finally:
                await _close(channel)
            if kept or in_hand:  # held unacked until the close: wait until they are counted again
                await self._counted_again(queue, ready - len(replayed))
        log.warning(
            "parked events replayed",
            extra={"service": service, "count": len(replayed), "kept": len(kept), "requested_by": requested_by},
        )
        return Replayed(replayed=replayed, kept=kept[:KEPT_SHOWN], kept_count=len(kept))

    async def _target_ready(self, service: str) -> None:
        async with _Passive(self) as passive:
            if await passive.declare(self._bus.topology.queue(service)) is None:
                raise ReplayRefused(f"{service} has no queue on this broker")

    async def _send_copy(
        self,
        channel: aiormq.abc.AbstractChannel,
        service: str,
        message: aiormq.abc.DeliveredMessage,
        requested_by: str,
    ) -> None:
        import aiormq
        from pamqp.commands import Basic

        properties = message.header.properties
        headers = {key: value for key, value in (properties.headers or {}).items() if key not in _DROPPED_ON_REPLAY}
        headers[REPLAYS_HEADER] = _int(headers.get(REPLAYS_HEADER), default=0) + 1
        headers[REPLAYED_BY_HEADER] = requested_by[:200]
        try:
            confirmation = await channel.basic_publish(
                message.body,
                exchange="",  # the default exchange routes by queue name: straight to its service
                routing_key=self._bus.topology.queue(service),
                properties=aiormq.spec.Basic.Properties(
                    content_type=properties.content_type,
                    delivery_mode=2,
                    # Without an id a broker's return could not be matched to this publish.
                    message_id=properties.message_id or _parked_id(message),
                    correlation_id=properties.correlation_id,
                    headers=headers,
                ),
                mandatory=True,
                timeout=self._bus.confirm_timeout_s,
            )
        except _amqp_errors() as exc:
            raise BusUnavailable(f"the copy was not confirmed: {exc!r}") from exc
        if not isinstance(confirmation, Basic.Ack):
            raise BusUnavailable(f"the broker answered {type(confirmation).__name__} for the copy")


class _Passive:
    """Passive declares; a missing queue closes the channel, so another is opened."""

    def __init__(self, lot: RabbitParkingLot) -> None:
        self._lot = lot
        self._channel: aiormq.abc.AbstractChannel | None = None

    async def __aenter__(self) -> _Passive:
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._channel is not None:
            await _close(self._channel)

    async def declare(self, queue: str) -> Any:
        import aiormq

        if self._channel is None or self._channel.is_closed:
            self._channel = await self._lot._channel()
        try:
            return await self._channel.queue_declare(queue, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity:
            self._channel = None
            return None
        except _amqp_errors() as exc:
            raise BusUnavailable(f"the broker refused: {exc!r}") from exc


# A reader stops waiting for more parked messages after this long without one.
_IDLE_S = 0.25
# Messages another reader just let go of come back to a quorum queue a moment after its
# channel closed (the queue's log must commit their return first, slower on a loaded
# broker): a message looked for and not seen, or a lot counted empty, is looked for again
# for a little over a second before a 404 or an empty replay.
_FIND_ATTEMPTS = 5
_FIND_PAUSE_S = 0.3
# How long a reader waits for what it held to be counted ready again: it asks at once,
# then after pauses doubling from the first to the most (the return took ~1 ms on an idle
# broker). The wait comes after the work, so a request answers within the gateway's 5 s.
_RETURN_WAIT_S = 1.0
_RETURN_FIRST_PAUSE_S = 0.005
_RETURN_MAX_PAUSE_S = 0.1
# A backlog waits this long for a reader of a lot to finish before counting it as it is.
_COUNT_TURN_WAIT_S = 0.5


async def _get_many(channel: aiormq.abc.AbstractChannel, queue: str, limit: int) -> tuple[list[Any], int]:
    """Up to ``limit`` ready messages of ``queue``, held unacked on ``channel``, and how many
    were ready before (what the queue counts again once the channel has let them go).

    A short-lived consumer with a prefetch of ``limit`` rather than ``basic.get`` in a
    loop: the broker pushes the batch without a round trip per message (``basic.get``
    cost ~7 ms a message on a loaded machine, a second for a few hundred)."""
    import aiormq

    messages: list[Any] = []
    arrived = asyncio.Event()
    try:
        declared = await channel.queue_declare(queue, passive=True)
        ready = declared.message_count or 0
        wanted = min(limit, ready)
        if wanted == 0:
            return [], ready

        async def deliver(message: Any) -> None:
            messages.append(message)
            arrived.set()

        await channel.basic_qos(prefetch_count=wanted)
        tag = f"smartgym-parking-reader-{uuid.uuid4().hex[:12]}"
        await channel.basic_consume(queue, deliver, no_ack=False, consumer_tag=tag)
        try:
            # Fewer may come than were counted (another reader holds some): stop when
            # the flow dries up, not only at the count.
            while len(messages) < wanted:
                arrived.clear()
                try:
                    await asyncio.wait_for(arrived.wait(), _IDLE_S)
                except TimeoutError:
                    break
        finally:
            await channel.basic_cancel(tag)
    except aiormq.exceptions.ChannelNotFoundEntity:
        return [], 0  # the service never consumed on this broker: nothing parked
    except _amqp_errors() as exc:
        raise BusUnavailable(f"the broker refused: {exc!r}") from exc
    return messages[:limit], ready


async def _ready_count(channel: aiormq.abc.AbstractChannel, queue: str) -> int:
    """How many messages ``queue`` holds ready, asked again while it says none.

    A listing of the lot a moment ago held them unacked on a channel it then closed; a
    quorum queue counts them as ready only once it has taken them back, so an operator's
    replay right after a listing would otherwise find the lot empty and replay nothing."""
    count = 0
    for attempt in range(_FIND_ATTEMPTS):
        if attempt:
            await asyncio.sleep(_FIND_PAUSE_S)
        declared = await channel.queue_declare(queue, passive=True)
        count = declared.message_count or 0
        if count:
            break
    return count


def _is_empty(message: Any) -> bool:
    from pamqp.commands import Basic

    return isinstance(message.delivery, Basic.GetEmpty)


async def _ack(channel: aiormq.abc.AbstractChannel, message: Any, service: str) -> None:
    try:
        await channel.basic_ack(message.delivery.delivery_tag)
    except _amqp_errors():
        # The copy is out and confirmed; the original stays parked. A second replay would
        # deliver it again, which the idempotent consumer absorbs.
        log.error("replayed, but the parked original could not be acked", extra={"service": service})


async def _close(channel: aiormq.abc.AbstractChannel) -> None:
    if channel.is_closed:
        return
    try:
        # Shielded: a request that times out or is cancelled mid-close must still close the
        # channel, or the parked messages it holds stay hidden until the connection drops.
        await asyncio.shield(channel.close())
    except _amqp_errors():
        log.debug("channel already gone", exc_info=True)


def _parked_id(message: Any) -> str:
    message_id = message.header.properties.message_id
    if isinstance(message_id, str) and _MESSAGE_ID.match(message_id):
        return message_id
    return "h" + hashlib.sha256(message.body).hexdigest()[:24]


def _rabbit_parked(service: str, message: Any) -> ParkedEvent:
    headers: Mapping[str, Any] = message.header.properties.headers or {}
    deaths = headers.get("x-death")
    death = deaths[0] if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict) else {}
    reason = headers.get(ERROR_HEADER)
    if reason is None:
        reason = f"dead-lettered by the broker: {_text(death.get('reason', 'unknown'))}"
    parked_at: datetime | None = None
    at_ms = _int(headers.get(PARKED_AT_HEADER), default=0)
    if at_ms:
        parked_at = datetime.fromtimestamp(at_ms / 1000, tz=UTC)
    elif isinstance(death.get("time"), datetime):
        parked_at = death["time"].astimezone(UTC)
    keys = death.get("routing-keys")
    fallback_key = _text(keys[0]) if isinstance(keys, list) and keys else None
    return parked_event(
        service=service,
        parked_id=_parked_id(message),
        body=message.body,
        reason=_text(reason),
        parked_at=parked_at,
        attempts=_int(headers.get(ATTEMPT_HEADER), default=1) if ERROR_HEADER in headers else None,
        replays=_int(headers.get(REPLAYS_HEADER), default=0),
        fallback_routing_key=fallback_key,
    )


def _rabbit_detail(service: str, message: Any) -> ParkedDetail:
    headers: Mapping[str, Any] = message.header.properties.headers or {}
    shown = {str(key): _text(value)[:HEADER_CHARS] for key, value in headers.items()}
    return detailed(_rabbit_parked(service, message), body=message.body, headers=shown)


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, str):
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (list, dict)):
        return json.dumps(value, default=_text, ensure_ascii=False)
    return str(value)


def _int(value: Any, *, default: int) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return default


@functools.cache
def _amqp_errors() -> tuple[type[BaseException], ...]:
    # Imported on first use: the in-process bus never loads aio-pika.
    import aio_pika
    import aiormq

    return (aiormq.AMQPError, aio_pika.exceptions.ChannelInvalidStateError, ConnectionError)
