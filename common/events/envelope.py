"""Typed, versioned integration events and their wire format.

An event is a past-tense fact. In Python it is one flat pydantic model; on the wire it
is an envelope whose ``data`` holds the event's own fields, so a payload field can never
collide with an envelope field::

    {"event_id": "...", "event_name": "UserRegistered", "event_version": 1,
     "occurred_at": "...", "correlation_id": "...", "data": {...}}

Events are routed as ``<name>.v<version>``. A breaking change is a new version with its
own class; consumers ignore fields they do not know (tolerant reader), so adding an
optional field is not a breaking change.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from common.context import correlation_id_or_new
from common.tracing import TRACEPARENT, valid_traceparent

ENVELOPE_FIELDS = frozenset({"event_id", "occurred_at", "correlation_id"})
MAX_EVENT_BYTES = 256 * 1024


# Routing keys of events whose outbox rows are deleted as soon as the broker confirmed
# them, instead of staying for the retention period (they carry biometric data).
PURGED_AFTER_PUBLISH: set[str] = set()


def utc_now() -> datetime:
    return datetime.now(UTC)


class Event(BaseModel):
    """Base of every integration event."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    event_name: ClassVar[str]
    event_version: ClassVar[int]
    # True for events carrying biometric data: no copy outlives its publication.
    purge_after_publish: ClassVar[bool] = False

    event_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    occurred_at: datetime = Field(default_factory=utc_now)
    correlation_id: str = Field(default_factory=correlation_id_or_new, max_length=64)
    # The W3C trace context the event travels in (CloudEvents' tracing extension puts it in
    # the envelope too): set when decoded from a message that carried one. Not a field: it
    # is never part of the event's data.
    _traceparent: str | None = PrivateAttr(default=None)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("purge_after_publish"):
            PURGED_AFTER_PUBLISH.add(cls.routing_key())

    @classmethod
    def routing_key(cls) -> str:
        return f"{cls.event_name}.v{cls.event_version}"

    @property
    def traceparent(self) -> str | None:
        return self._traceparent

    def in_trace(self, traceparent: object) -> Self:
        """This event, travelling in trace context ``traceparent`` (ignored unless valid)."""
        valid = valid_traceparent(traceparent)
        if valid is not None:
            self._traceparent = valid
        return self

    def to_wire(self, *, traceparent: str | None = None) -> bytes:
        envelope: dict[str, Any] = {
            "event_id": str(self.event_id),
            "event_name": self.event_name,
            "event_version": self.event_version,
            "occurred_at": self.occurred_at.isoformat(),
            "correlation_id": self.correlation_id,
        }
        if traceparent:
            envelope[TRACEPARENT] = traceparent
        envelope["data"] = self.model_dump(mode="json", exclude=set(ENVELOPE_FIELDS))
        return json.dumps(envelope, separators=(",", ":")).encode()


E = TypeVar("E", bound=Event)


class MalformedEvent(ValueError):
    """A message that is not a valid event of the published language."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class OutgoingMessage:
    """An encoded event on its way to the broker (as the outbox stores it)."""

    event_id: uuid.UUID
    routing_key: str
    body: bytes
    correlation_id: str | None
    # The context the bus passes on in the message's headers (the relay's publish span).
    traceparent: str | None = None

    @classmethod
    def of(cls, event: Event) -> OutgoingMessage:
        return cls(event.event_id, event.routing_key(), event.to_wire(), event.correlation_id)


class EventCatalog:
    """The published language: every event type, by name and version."""

    def __init__(self) -> None:
        self._types: dict[tuple[str, int], type[Event]] = {}

    def register(self, event_type: type[E]) -> type[E]:
        key = (event_type.event_name, event_type.event_version)
        existing = self._types.get(key)
        if existing is not None and existing is not event_type:
            raise ValueError(f"event {key} is declared twice")
        self._types[key] = event_type
        return event_type

    def __iter__(self) -> Any:
        return iter(self._types.values())

    def get(self, name: str, version: int) -> type[Event] | None:
        return self._types.get((name, version))

    def decode(self, body: bytes) -> Event:
        """Parse and validate one wire message; raises :class:`MalformedEvent` with a reason."""
        if len(body) > MAX_EVENT_BYTES:
            raise MalformedEvent(f"event body of {len(body)} bytes exceeds {MAX_EVENT_BYTES}")
        try:
            envelope = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise MalformedEvent(f"body is not JSON: {exc}") from exc
        if not isinstance(envelope, dict):
            raise MalformedEvent("envelope is not a JSON object")
        name, version, data = (
            envelope.get("event_name"),
            envelope.get("event_version"),
            envelope.get("data"),
        )
        if not isinstance(name, str) or not isinstance(version, int) or isinstance(version, bool):
            raise MalformedEvent("envelope lacks event_name/event_version")
        if not isinstance(data, dict):
            raise MalformedEvent("envelope lacks a data object")
        event_type = self.get(name, version)
        if event_type is None:
            raise MalformedEvent(f"unknown event {name}.v{version}")
        fields = {**data, **{key: envelope.get(key) for key in ENVELOPE_FIELDS}}
        try:
            event = event_type.model_validate(fields)
        except ValidationError as exc:
            raise MalformedEvent(f"invalid {name}.v{version}: {_summarise(exc)}") from exc
        return event.in_trace(envelope.get(TRACEPARENT))


def envelope_traceparent(body: bytes | str) -> str | None:
    """The trace context written into an event's envelope, if any."""
    try:
        envelope = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return valid_traceparent(envelope.get(TRACEPARENT)) if isinstance(envelope, dict) else None


def _summarise(error: ValidationError) -> str:
    parts = [f"{'.'.join(str(loc) for loc in item['loc']) or '<root>'}: {item['msg']}" for item in error.errors()[:5]]
    return "; ".join(parts)
