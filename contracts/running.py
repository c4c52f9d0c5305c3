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
    # Gun time: seconds from the race's start to this runner's finish (ranks a distance race).
    finish_s: float | None = Field(default=None, ge=0)
    # Chip time: seconds from the runner's own first point to their finish. Optional and
    # added later (a tolerant reader ignores it, an old publisher leaves it out): v1 still.
    chip_s: float | None = Field(default=None, ge=0)


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


# -- walking together, friends and shared step goals ---------------------------------------


@CATALOG.register
class FriendRequestAccepted(Event):
    """``friend_id`` accepted ``user_id``'s friend request (tell ``user_id``)."""

    event_name: ClassVar[str] = "FriendRequestAccepted"
    event_version: ClassVar[int] = 1

    user_id: uuid.UUID
    friend_id: uuid.UUID
    accepted_at: datetime


@CATALOG.register
class OutingInvited(Event):
    """``host_id`` invited friends to walk or run together; each invitee may be pushed."""

    event_name: ClassVar[str] = "OutingInvited"
    event_version: ClassVar[int] = 1

    outing_id: uuid.UUID
    host_id: uuid.UUID
    title: str = Field(max_length=120)
    invitees: tuple[uuid.UUID, ...] = Field(max_length=50)
    expires_at: datetime


@CATALOG.register
class OutingStarted(Event):
    """The host started the outing; ``members`` (who accepted) may be pushed to join."""

    event_name: ClassVar[str] = "OutingStarted"
    event_version: ClassVar[int] = 1

    outing_id: uuid.UUID
    host_id: uuid.UUID
    members: tuple[uuid.UUID, ...] = Field(max_length=50)
    started_at: datetime
    title: str = Field(default="", max_length=120)  # optional, added later: still v1


@CATALOG.register
class OutingEnded(Event):
    """The outing is over for everyone: the host ended it, all left, or its time ran out."""

    event_name: ClassVar[str] = "OutingEnded"
    event_version: ClassVar[int] = 1

    outing_id: uuid.UUID
    host_id: uuid.UUID
    reason: Literal["host_ended", "all_left", "time_up"]
    ended_at: datetime
    # Optional, added later (still v1): who took part (the host and those who accepted).
    members: tuple[uuid.UUID, ...] = Field(default=(), max_length=50)
    title: str = Field(default="", max_length=120)


@CATALOG.register
class StepGoalReached(Event):
    """A group reached its shared step goal for the period starting ``period_start``."""

    event_name: ClassVar[str] = "StepGoalReached"
    event_version: ClassVar[int] = 1

    goal_id: uuid.UUID
    title: str = Field(max_length=120)
    members: tuple[uuid.UUID, ...] = Field(max_length=50)
    period: Literal["day", "week"]
    period_start: date
    target: int = Field(gt=0)
    steps: int = Field(ge=0)
