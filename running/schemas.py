"""running's request and response models (inputs refuse unknown fields)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from running.friends import normalise_code
from running.models import Race, RaceEntry


class RunOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    run_id: uuid.UUID
    user_id: uuid.UUID
    title: str
    status: str
    source: str
    started_at: datetime
    finished_at: datetime | None
    distance_m: float
    moving_s: float
    elapsed_s: float
    race_id: uuid.UUID | None


class RunDetail(RunOut):
    summary: dict[str, Any]
    track: list[tuple[float, float, float]]  # (t, lat, lon) of the points kept


class FriendCodeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str = Field(min_length=1, max_length=20, description="a friend code, e.g. ABCDE-12345")

    @field_validator("code")
    @classmethod
    def _canonical(cls, value: str) -> str:
        return normalise_code(value)


class FriendCodeOut(BaseModel):
    code: str


class FriendAdded(BaseModel):
    status: Literal["requested", "accepted"]
    user_id: uuid.UUID
    name: str


class FriendsOut(BaseModel):
    friends: list[uuid.UUID]
    requested: list[uuid.UUID]  # asked by me, not yet accepted
    incoming: list[uuid.UUID]  # asking me
    names: dict[str, str]  # user id → the name they chose (or a neutral one)
    live: dict[str, uuid.UUID]  # friend's user id → the live run they are on now


class ShareIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    hours: float = Field(default=3, gt=0, le=24 * 14)


class RaceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str = Field(min_length=1, max_length=120)
    mode: Literal["distance", "time"]
    target: float = Field(gt=0, description="metres (distance) or seconds (time)")
    invite: list[uuid.UUID] = Field(default_factory=list, max_length=49)
    start_at: datetime | None = None

    @model_validator(mode="after")
    def _sane(self) -> RaceIn:
        if self.mode == "distance" and not 100 <= self.target <= 100_000:
            raise ValueError("a distance race is 100 m to 100 km")
        if self.mode == "time" and not 60 <= self.target <= 6 * 3600:
            raise ValueError("a time race lasts 1 minute to 6 hours")
        if self.start_at is not None:
            if self.start_at.tzinfo is None:
                raise ValueError("start_at needs a timezone")
            if self.start_at < datetime.now(UTC) - timedelta(minutes=1):
                raise ValueError("start_at is in the past")
        return self


class RaceEntryOut(BaseModel):
    user_id: uuid.UUID
    status: str
    distance_m: float
    finish_s: float | None = Field(description="gun time: seconds from the race's start to the finish")
    chip_s: float | None = Field(description="the runner's own time from their first step to the finish")
    rank: int | None


class RaceOut(BaseModel):
    race_id: uuid.UUID
    host_id: uuid.UUID
    title: str
    mode: str
    target: float
    status: str
    start_at: datetime | None
    finished_at: datetime | None
    entries: list[RaceEntryOut]

    @classmethod
    def of(cls, race: Race, entries: Sequence[RaceEntry]) -> RaceOut:
        """Entries in rank order, then the unranked by distance."""
        ordered = sorted(entries, key=lambda entry: (entry.rank is None, entry.rank or 0, -entry.distance_m))
        return cls(
            race_id=race.race_id,
            host_id=race.host_id,
            title=race.title,
            mode=race.mode,
            target=race.target,
            status=race.status,
            start_at=race.start_at,
            finished_at=race.finished_at,
            entries=[
                RaceEntryOut(
                    user_id=entry.user_id,
                    status=entry.status,
                    distance_m=entry.distance_m,
                    finish_s=entry.finish_s,
                    chip_s=entry.chip_s,
                    rank=entry.rank,
                )
                for entry in ordered
            ],
        )


class OutingIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str = Field(min_length=1, max_length=120)
    members: list[uuid.UUID] = Field(min_length=1, max_length=19)
    minutes: int = Field(default=90, ge=5, le=12 * 60)


class OutingOut(BaseModel):
    outing_id: uuid.UUID
    members: list[str]
    ends_at: datetime
    path: str


class StepsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    device_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")
    steps: int = Field(ge=0, le=200_000)


class PrivacyZoneIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    radius_m: float = Field(default=300, ge=100, le=2000)


class ProfileIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    display_name: str | None = Field(default=None, min_length=1, max_length=40)
    max_hr: int | None = Field(default=None, ge=120, le=230, description="beats per minute")
    resting_hr: int | None = Field(default=None, ge=30, le=110, description="beats per minute")
    nearby_opt_in: bool = Field(default=False, description="appear to (and see) runners nearby")
    privacy_zones: list[PrivacyZoneIn] = Field(default_factory=list, max_length=5)


class StepGoalIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str = Field(min_length=1, max_length=120)
    members: list[uuid.UUID] = Field(default_factory=list, max_length=49)
    period: Literal["day", "week"]
    target: int = Field(ge=1000, le=10_000_000)


class WorkoutStepIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["warmup", "run", "recover", "cooldown"]
    distance_m: float | None = Field(default=None, ge=50, le=50_000)
    duration_s: float | None = Field(default=None, ge=10, le=4 * 3600)
    pace_min_s_per_km: float | None = Field(default=None, ge=120, le=1200, description="fastest pace wanted")
    pace_max_s_per_km: float | None = Field(default=None, ge=120, le=1200, description="slowest pace wanted")

    @model_validator(mode="after")
    def _one_amount(self) -> WorkoutStepIn:
        if (self.distance_m is None) == (self.duration_s is None):
            raise ValueError("a step has either distance_m or duration_s")
        if (self.pace_min_s_per_km is None) != (self.pace_max_s_per_km is None):
            raise ValueError("a pace target needs both ends")
        low, high = self.pace_min_s_per_km, self.pace_max_s_per_km
        if low is not None and high is not None and low > high:
            raise ValueError("pace_min_s_per_km is the faster (smaller) end")
        return self


class WorkoutRepeatIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    repeat: int = Field(ge=2, le=50)
    steps: list[WorkoutStepIn] = Field(min_length=1, max_length=10)


class WorkoutIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str = Field(min_length=1, max_length=120)
    steps: list[WorkoutStepIn | WorkoutRepeatIn] = Field(min_length=1, max_length=50)

    def expanded(self) -> list[dict[str, Any]]:
        """The steps with repeats written out (what the live tracker follows)."""
        out: list[dict[str, Any]] = []
        for item in self.steps:
            group = item.steps * item.repeat if isinstance(item, WorkoutRepeatIn) else [item]
            out += [step.model_dump(exclude_none=True) for step in group]
        if len(out) > 200:
            raise ValueError("a workout has at most 200 steps")
        return out


class ShoeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=80)
    retire_at_km: float = Field(default=700.0, ge=50, le=5000)


class RunShoeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    shoe_id: uuid.UUID | None


class StravaConnectIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_-]+$")


class CoachIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    question: str = Field(min_length=1, max_length=500)
