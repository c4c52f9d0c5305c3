"""monitoring's request and response bodies for the event bus's backlog and parking lot.

A parked message is answered as the kernel's ``ParkedEvent`` (a listing, a replay) or
``ParkedDetail`` (an inspection) as it stands: those are already what an operator sees.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from common.events.parking import ParkedEvent


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
