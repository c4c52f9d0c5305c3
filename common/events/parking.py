"""The bus's backlog and parking lot, for operators: what waits in each service's queue,
which messages were parked and why, and a replay that hands one back to its service.

This module holds what an operator sees (``Backlog``, ``ParkedEvent``), the errors, the
``ParkingLot`` interface and ``parking_lot_of``; the lots themselves are in
:mod:`common.events.parking_rabbitmq` (through the broker protocol, with the replay's
copy-then-ack) and :mod:`common.events.parking_inprocess` (embedded mode).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime, timedelta
from typing import Protocol

from pydantic import TypeAdapter, ValidationError

from common.events.bus import EventBus
from common.events.inprocess import InProcessBus

PREVIEW_CHARS = 300
# Kept events a replay of every parked event lists (it counts them all).
KEPT_SHOWN = 100
DETAIL_BYTES = 64 * 1024


class NotParked(LookupError):
    """No such parked message (never parked, replayed already, or being replayed now)."""


class BusUnavailable(RuntimeError):
    """The broker cannot be reached or did not confirm: nothing changed."""


class ReplayRefused(RuntimeError):
    """The message cannot go back now (its service's queue is gone or not consuming)."""


class ForgottenByTheInbox(ReplayRefused):
    """The event is older than what its service's inbox remembers: if another copy of it
    was applied then, the service could not tell and would apply it again."""


@dataclass(frozen=True)
class ServiceBacklog:
    service: str
    queue: str
    exists: bool
    ready: int  # waiting in the service's queue
    unacked: int | None  # delivered, not settled; None where the protocol cannot tell
    consumers: int
    retrying: int  # waiting out a back-off in the delay queues
    parked: int


@dataclass(frozen=True)
class Backlog:
    kind: str
    services: list[ServiceBacklog]
    unrouted: int | None  # events no service is bound for (kept for inspection)


@dataclass(frozen=True)
class ParkedEvent:
    service: str
    parked_id: str
    reason: str
    event_name: str | None
    event_version: int | None
    event_id: str | None
    occurred_at: datetime | None  # the envelope's, when it has a readable one
    routing_key: str | None
    parked_at: datetime | None
    attempts: int | None
    replays: int
    copies: int
    size: int
    preview: str


@dataclass(frozen=True)
class Replayed:
    """What a replay of every parked message did: those handed back, and those kept
    parked because their service's inbox no longer remembers that old an event."""

    replayed: list[ParkedEvent]
    kept: list[ParkedEvent]  # the first KEPT_SHOWN of them
    kept_count: int


@dataclass(frozen=True)
class ParkedDetail(ParkedEvent):
    """A parked message as inspected: its headers and up to DETAIL_BYTES of its body."""

    headers: dict[str, str]
    payload: str
    truncated: bool


class ParkingLot(Protocol):
    kind: str

    def known_services(self, *, configured: Sequence[str]) -> list[str]:
        """The services whose queues this lot can show: ``configured`` (from the
        installation) plus any the bus knows itself."""

    async def backlog(self, *, services: Sequence[str]) -> Backlog: ...

    async def parked(self, *, service: str, limit: int) -> list[ParkedEvent]: ...

    async def inspect(self, *, service: str, parked_id: str) -> ParkedDetail: ...

    async def replay(
        self, *, service: str, parked_id: str, requested_by: str, remembered_since: datetime | None
    ) -> ParkedEvent:
        """Hand one parked message back. An event that occurred before
        ``remembered_since`` (the inbox's retention) is refused with
        :class:`ForgottenByTheInbox`; None replays it whatever its age (the operator knows
        no copy of it was applied)."""

    async def replay_all(
        self, *, service: str, limit: int, requested_by: str, remembered_since: datetime | None
    ) -> Replayed:
        """Hand back up to ``limit`` of what is parked now, oldest first; events older than
        ``remembered_since`` stay parked (``Replayed.kept``) and do not count against
        ``limit``."""


def parking_lot_of(bus: EventBus, *, scan_limit: int = 1000, timeout_s: float = 10.0) -> ParkingLot:
    """The parking lot of ``bus`` (RabbitMQ or in-process)."""
    # Imported here: both lots build on this module, and only a broker's loads aio-pika.
    if isinstance(bus, InProcessBus):
        from common.events.parking_inprocess import InProcessParkingLot

        return InProcessParkingLot(bus)
    from common.events.parking_rabbitmq import RabbitParkingLot
    from common.events.rabbitmq import RabbitMQBus

    if isinstance(bus, RabbitMQBus):
        return RabbitParkingLot(bus, scan_limit=scan_limit, timeout_s=timeout_s)
    raise TypeError(f"no parking lot for {type(bus).__name__}")


# -- shared by the lots ----------------------------------------------------------------


# The replayed copy must be consumed before the inbox forgets a copy applied when the
# event occurred; it waits in its service's queue, and clocks differ. A day covers a
# service down for hours; an event this close to the horizon counts as forgotten.
HORIZON_MARGIN = timedelta(days=1)


def inbox_horizon(*, retention: timedelta, now: datetime) -> datetime:
    """The oldest event a replay may hand back without being asked to: one that occurred
    earlier may have had a copy applied whose inbox row is swept by the time it comes.
    The margin is at most half the retention, so a short one still lets recent events go."""
    return now - retention + min(HORIZON_MARGIN, retention / 2)


def forgotten(item: ParkedEvent, *, remembered_since: datetime | None) -> bool:
    """Whether ``item``'s event is older than its service's inbox remembers. One without a
    readable time is not: its consumer refuses it as malformed, and parks it again."""
    return remembered_since is not None and item.occurred_at is not None and item.occurred_at < remembered_since


def refuse_if_forgotten(item: ParkedEvent, *, remembered_since: datetime | None) -> None:
    if not forgotten(item, remembered_since=remembered_since):
        return
    raise ForgottenByTheInbox(
        f"the event occurred at {item.occurred_at}, before {item.service} can be sure to still "
        f"remember consuming it (events since {remembered_since}): if a copy of it was applied "
        "then, it would be applied again. Replay it anyway only if no copy of it ever was."
    )


def parked_event(
    *,
    service: str,
    parked_id: str,
    body: bytes,
    reason: str,
    parked_at: datetime | None,
    attempts: int | None,
    replays: int,
    fallback_routing_key: str | None,
) -> ParkedEvent:
    name: str | None = None
    version: int | None = None
    event_id: str | None = None
    occurred_at: datetime | None = None
    try:
        envelope = json.loads(body)
    except ValueError:
        envelope = None
    if isinstance(envelope, dict):
        if isinstance(envelope.get("event_name"), str):
            name = envelope["event_name"][:200]
        if isinstance(envelope.get("event_version"), int) and not isinstance(envelope["event_version"], bool):
            version = envelope["event_version"]
        if envelope.get("event_id") is not None:
            event_id = str(envelope["event_id"])[:100]
        occurred_at = _aware_time(envelope.get("occurred_at"))
    text = body.decode("utf-8", errors="replace")
    return ParkedEvent(
        service=service,
        parked_id=parked_id,
        reason=reason,
        event_name=name,
        event_version=version,
        event_id=event_id,
        occurred_at=occurred_at,
        routing_key=f"{name}.v{version}" if name is not None and version is not None else fallback_routing_key,
        parked_at=parked_at,
        attempts=attempts,
        replays=replays,
        copies=1,
        size=len(body),
        preview=text[:PREVIEW_CHARS],
    )


_MOMENT = TypeAdapter(datetime)


def _aware_time(value: object) -> datetime | None:
    """The envelope's time as its consumer reads it (pydantic: ISO text or Unix seconds)."""
    if value is None or isinstance(value, (dict, list)):
        return None
    try:
        moment = _MOMENT.validate_python(value)
    except ValidationError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def detailed(item: ParkedEvent, *, body: bytes, headers: dict[str, str]) -> ParkedDetail:
    summary = {entry.name: getattr(item, entry.name) for entry in fields(ParkedEvent)}
    return ParkedDetail(
        **summary,
        headers=headers,
        payload=body[:DETAIL_BYTES].decode("utf-8", errors="replace"),
        truncated=len(body) > DETAIL_BYTES,
    )


def grouped(items: list[ParkedEvent]) -> list[ParkedEvent]:
    """One entry per parked id, in parking order, with its number of copies."""
    counts: dict[str, int] = {}
    first: dict[str, ParkedEvent] = {}
    for item in items:
        counts[item.parked_id] = counts.get(item.parked_id, 0) + 1
        first.setdefault(item.parked_id, item)
    return [replace(item, copies=counts[key]) for key, item in first.items()]
