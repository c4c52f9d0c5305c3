"""Live runs, races and step rankings (published by running)."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from common.events.envelope import Event
from contracts.catalog import CATALOG


@CATALOG.register
class RunStarted(Event):
    """A member started a live run; ``friends`` may be told (and may watch)."""

    event_name: ClassVar[str] = "RunStarted"
    event_version: ClassVar[int] = 1

    run_id: uuid.UUID
    user_id: uuid.UUID
    started_at: datetime
    race_id: uuid.UUID | None = None
    friends: tuple[uuid.UUID, ...] = Field(default=(), max_length=1000)


@CATALOG.register
class RunFinished(Event):
    """A run ended (live or imported) with its summary."""

    event_name: ClassVar[str] = "RunFinished"
    event_version: ClassVar[int] = 1

    run_id: uuid.UUID
    user_id: uuid.UUID
    started_at: datetime
    finished_at: datetime
    distance_m: float = Field(ge=0)
    moving_s: float = Field(ge=0)
    source: Literal["live", "gpx"] = "live"
    race_id: uuid.UUID | None = None


class RacePlacing(BaseModel):
    model_config = ConfigDict(frozen=True)

    user_id: uuid.UUID
    rank: int | None = Field(ge=1)  # None: did not finish
    distance_m: float = Field(ge=0)
    finish_s: float | None = Field(default=None, ge=0)


@CATALOG.register
class RaceFinished(Event):
    """A race is over; ``placings`` in rank order, non-finishers last."""

    event_name: ClassVar[str] = "RaceFinished"
    event_version: ClassVar[int] = 1

    race_id: uuid.UUID
    mode: Literal["distance", "time"]
    target: float = Field(gt=0)
    finished_at: datetime
    placings: tuple[RacePlacing, ...] = Field(max_length=100)


@CATALOG.register
class StepRankChanged(Event):
    """Somebody overtook ``user_id`` in the friends' step ranking of ``day``."""

    event_name: ClassVar[str] = "StepRankChanged"
    event_version: ClassVar[int] = 1

    user_id: uuid.UUID
    overtaken_by: uuid.UUID
    day: date
    new_rank: int = Field(ge=1)
    steps: int = Field(ge=0)
