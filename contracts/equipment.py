"""Equipment outages (published by monitoring)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import ClassVar, Literal

from pydantic import Field

from common.events.envelope import Event
from contracts.catalog import CATALOG

Criticality = Literal["critical", "major", "minor"]


class EquipmentOutageEvent(Event):
    """What every event about one outage of one device carries (not an event itself)."""

    fault_id: uuid.UUID
    device_id: str = Field(max_length=64)
    branch_id: str = Field(max_length=64)
    kind: str = Field(max_length=32)
    name: str = Field(max_length=120)


@CATALOG.register
class EquipmentFault(EquipmentOutageEvent):
    """A device went silent or reported a fault; ``fault_id`` names this outage until it
    is recovered. Not published inside a maintenance window."""

    event_name: ClassVar[str] = "EquipmentFault"
    event_version: ClassVar[int] = 1

    criticality: Criticality
    reason: str = Field(max_length=200)
    detected_at: datetime


@CATALOG.register
class EquipmentRecovered(EquipmentOutageEvent):
    """A faulty device answers again (after enough good checks in a row not to be a flap)."""

    event_name: ClassVar[str] = "EquipmentRecovered"
    event_version: ClassVar[int] = 1

    recovered_at: datetime
    down_for_s: float = Field(ge=0)


@CATALOG.register
class EquipmentFaultEscalated(EquipmentOutageEvent):
    """A critical fault stayed unacknowledged too long: the operations team takes it."""

    event_name: ClassVar[str] = "EquipmentFaultEscalated"
    event_version: ClassVar[int] = 1

    reason: str = Field(max_length=200)
    detected_at: datetime


@CATALOG.register
class EquipmentFaultWithdrawn(EquipmentOutageEvent):
    """An open fault closed because its device was retired: nobody needs to act on it any
    more. The last event of the outage, in place of ``EquipmentRecovered``."""

    event_name: ClassVar[str] = "EquipmentFaultWithdrawn"
    event_version: ClassVar[int] = 1

    withdrawn_at: datetime
    #: The fault had been handed to the operations team, who should hear that it is over.
    escalated: bool
