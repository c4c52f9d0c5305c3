"""monitoring's response bodies: equipment, faults, health changes and maintenance
windows; and the request and response bodies of the event bus's backlog and parking lot.
(Equipment and maintenance requests are ``monitoring.registry``'s ``EquipmentIn`` and
``MaintenanceIn``.)

A parked message is answered as the kernel's ``ParkedEvent`` (a listing, a replay) or
``ParkedDetail`` (an inspection) as it stands: those are already what an operator sees.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from common.events.parking import ParkedEvent


class EquipmentOut(BaseModel):
    device_id: str
    branch_id: str
    kind: str
    name: str
    address: str
    ping_url: str | None
    heartbeat_period_s: int | None
    criticality: str
    health: str
    health_reason: str
    health_since: datetime | None
    live: dict[str, Any] | None = None


class RegisteredOut(EquipmentOut):
    token: str  # shown once; only its hash is kept


class FaultOut(BaseModel):
    fault_id: uuid.UUID
    device_id: str
    branch_id: str
    criticality: str
    reason: str
    opened_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    escalated_at: datetime | None
    closed_at: datetime | None


class StateChangeOut(BaseModel):
    from_health: str
    to_health: str
    reason: str
    at: datetime
    announced: bool
    fault_id: uuid.UUID | None


class MaintenanceOut(BaseModel):
    id: int
    device_id: str
    starts_at: datetime
    ends_at: datetime
    reason: str
    created_by: str


class ServiceBacklogOut(BaseModel):
    service: str
    queue: str
    exists: bool
    ready: int = Field(description="Messages waiting in the service's queue.")
    unacked: int | None = Field(description="Delivered, not yet settled; null where the broker protocol cannot tell.")
    consumers: int
    retrying: int = Field(description="Messages waiting out a back-off before another attempt.")
    parked: int


class BacklogOut(BaseModel):
    kind: str = Field(description="rabbitmq or in-process")
    services: list[ServiceBacklogOut]
    unrouted: int | None = Field(description="Events no service is bound for (kept for inspection).")


class ReplayAllIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit: int = Field(default=100, ge=1, le=1000, description="Parked messages to replay at most, oldest first.")


class ReplayedOut(BaseModel):
    replayed: list[ParkedEvent]
