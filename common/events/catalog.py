"""The events SmartGym services publish to each other (the published language).

Services cannot import each other, so the contract lives here, in the kernel. Each class
is one version of one event; see :mod:`common.events.envelope` for the rules.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field

from common.events.envelope import Event, EventCatalog

CATALOG = EventCatalog()

ACCESS_HOURS_PATTERN = r"^([01][0-9]|2[0-3]):[0-5][0-9]-([01][0-9]|2[0-3]):[0-5][0-9]$"


@CATALOG.register
class UserRegistered(Event):
    """A person created an account with auth."""

    event_name: ClassVar[str] = "UserRegistered"
    event_version: ClassVar[int] = 1

    user_id: uuid.UUID
    email: EmailStr | None = None  # members sign up with an email or a phone number
    phone: str | None = None
    roles: tuple[str, ...]


@CATALOG.register
class MembershipChanged(Event):
    """A membership was created or changed; ``version`` orders changes of one membership
    (consumers keep the highest they have seen, so a late redelivery cannot roll back)."""

    event_name: ClassVar[str] = "MembershipChanged"
    event_version: ClassVar[int] = 1

    membership_id: uuid.UUID
    member_id: uuid.UUID
    branch_id: str | None  # None: every branch of the chain
    status: Literal["active", "paused", "expired", "blocked"]
    valid_from: datetime
    valid_until: datetime
    identity_required: bool
    identity_verified: bool
    version: int = Field(ge=1)
    # Daily window the member may enter, "HH:MM-HH:MM" in the branch's local time (may wrap
    # past midnight); None: any time. Optional, so v1 consumers that ignore it stay valid.
    access_hours: str | None = Field(default=None, pattern=ACCESS_HOURS_PATTERN)


@CATALOG.register
class DeviceRevoked(Event):
    """A device's credentials were revoked: its tokens must stop being honoured."""

    event_name: ClassVar[str] = "DeviceRevoked"
    event_version: ClassVar[int] = 1

    device_id: uuid.UUID
    branch_id: str


@CATALOG.register
class PasswordResetRequested(Event):
    """Somebody asked to reset a password; notification delivers the one-time token."""

    event_name: ClassVar[str] = "PasswordResetRequested"
    event_version: ClassVar[int] = 1

    user_id: uuid.UUID
    email: EmailStr
    reset_token: str = Field(min_length=20, max_length=200)
    expires_at: datetime


@CATALOG.register
class FaceEnrolled(Event):
    """A member enrolled (or re-enrolled) their face with consent; the vector replaces any
    earlier one. Biometric data: consumers keep it only as long as the member's consent."""

    event_name: ClassVar[str] = "FaceEnrolled"
    event_version: ClassVar[int] = 1

    member_id: uuid.UUID
    embedding: tuple[float, ...] = Field(min_length=16, max_length=4096)
    model: str
    embedding_space: str


@CATALOG.register
class FaceErased(Event):
    """A member's face vector was destroyed: every copy must go within seconds."""

    event_name: ClassVar[str] = "FaceErased"
    event_version: ClassVar[int] = 1

    member_id: uuid.UUID
    reason: Literal["consent_withdrawn", "member_request", "account_deleted"]


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
class TaskJudged(Event):
    """The AI checked a helper's task: approved tasks are paid ``payout_krw``."""

    event_name: ClassVar[str] = "TaskJudged"
    event_version: ClassVar[int] = 1

    task_id: uuid.UUID
    helper_id: uuid.UUID
    branch_id: str = Field(max_length=64)
    verdict: Literal["approved", "rejected"]
    score: float = Field(ge=0, le=1)
    reason: str = Field(default="", max_length=200)
    payout_krw: int = Field(default=0, ge=0)


@CATALOG.register
class BranchPreferenceCreated(Event):
    """A branch owner described the branch's members' tastes, so notices can be tailored:
    the language most members read and the topics they care about."""

    event_name: ClassVar[str] = "BranchPreferenceCreated"
    event_version: ClassVar[int] = 1

    preference_id: uuid.UUID
    branch_id: str = Field(max_length=64)
    default_locale: Literal["ko", "en"] = "ko"
    topics: tuple[str, ...] = Field(default=(), max_length=20)
    created_by: uuid.UUID


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
