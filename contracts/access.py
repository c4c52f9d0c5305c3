"""Gate decisions and gate lines (published by access)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import ClassVar, Literal

from pydantic import Field

from common.events.envelope import Event
from contracts.catalog import CATALOG

EntryMethod = Literal["face", "qr", "remote"]


@CATALOG.register
class AccessGranted(Event):
    """A gate let somebody in (or out). ``offline``: decided while the broker was away and
    published late; ``decided_at`` is when it happened, not when it was published."""

    event_name: ClassVar[str] = "AccessGranted"
    event_version: ClassVar[int] = 1

    attempt_id: uuid.UUID
    branch_id: str
    gate_id: str
    direction: Literal["in", "out"]
    member_id: uuid.UUID | None  # None only for a remote open by an operator
    method: EntryMethod
    decided_at: datetime
    offline: bool = False


@CATALOG.register
class AccessDenied(Event):
    """A gate refused an attempt; ``reason`` is the code the kiosk showed."""

    event_name: ClassVar[str] = "AccessDenied"
    event_version: ClassVar[int] = 1

    attempt_id: uuid.UUID
    branch_id: str
    gate_id: str
    member_id: uuid.UUID | None  # None when nobody was recognised
    method: EntryMethod
    reason: str = Field(max_length=64)
    decided_at: datetime
    offline: bool = False


@CATALOG.register
class GateStatusChanged(Event):
    """A gate's serial line went down or came back (for monitoring and the branch owner)."""

    event_name: ClassVar[str] = "GateStatusChanged"
    event_version: ClassVar[int] = 1

    branch_id: str
    gate_id: str
    line: Literal["up", "down"]
    detail: str = Field(default="", max_length=200)
    changed_at: datetime
