"""monitoring's response bodies: equipment, faults, health changes and maintenance
windows, and the requests that register equipment and plan maintenance; and the request
and response bodies of the event bus's backlog and parking lot.

A parked message is answered as the kernel's ``ParkedEvent`` (a listing, a replay) or
``ParkedDetail`` (an inspection) as it stands: those are already what an operator sees.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, field_validator, model_validator

from common.events.parking import ParkedEvent
from contracts import Criticality

IDENTIFIER = r"^[A-Za-z0-9._-]+$"
EquipmentKind = Literal["gate", "camera", "kiosk", "treadmill", "bike", "rower", "strength", "hvac", "locker", "other"]
MAX_WINDOW = timedelta(days=30)


class EquipmentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    device_id: str = Field(min_length=1, max_length=64, pattern=IDENTIFIER)
    branch_id: str = Field(min_length=1, max_length=64, pattern=IDENTIFIER)
    kind: EquipmentKind
    name: str = Field(min_length=1, max_length=120)
    address: str = Field(default="", max_length=200, description="where it is, or its network address")
    ping_url: HttpUrl | None = None
    heartbeat_period_s: int | None = Field(default=600, ge=5, le=86_400)
    criticality: Criticality = "major"

    @field_validator("ping_url")
    @classmethod
    def _http_only(cls, url: HttpUrl | None) -> HttpUrl | None:
        if url is not None and url.scheme not in ("http", "https"):
            raise ValueError("ping_url must be http or https")
        return url

    @model_validator(mode="after")
    def _watchable(self) -> EquipmentIn:
        if self.ping_url is None and self.heartbeat_period_s is None:
            raise ValueError("a device needs a ping_url, a heartbeat_period_s, or both")
        return self


class MaintenanceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    starts_at: datetime
    ends_at: datetime
    reason: str = Field(min_length=1, max_length=200)

    @model_validator(mode="after")
    def _sane(self) -> MaintenanceIn:
        if self.starts_at.tzinfo is None or self.ends_at.tzinfo is None:
            raise ValueError("times need a timezone")
        if self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        if self.ends_at - self.starts_at > MAX_WINDOW:
            raise ValueError("a maintenance window lasts at most 30 days")
        return self


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

    limit: int = Field(
        default=100,
        ge=1,
        le=1000,
        description="Parked messages to replay at most, oldest first (those kept as too old do not count).",
    )


class ReplayedOut(BaseModel):
    replayed: list[ParkedEvent]
    kept: list[ParkedEvent] = Field(
        default_factory=list,
        description="Left parked: older than the service's inbox remembers (replay each on its own); the first 100.",
    )
    kept_count: int = Field(default=0, description="How many were left parked as too old.")
