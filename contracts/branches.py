"""Branch profiles, members' reviews of branches, and branch preferences."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from common.events.envelope import Event
from contracts.catalog import CATALOG

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


class OpeningHours(BaseModel):
    """One day's opening hours, local time ("HH:MM"); ``close`` before ``open`` runs past
    midnight. A branch without any entry is open around the clock."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    day: Weekday
    open: str = Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")
    close: str = Field(pattern=r"^([01][0-9]|2[0-4]):[0-5][0-9]$")


class Price(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    name: str = Field(max_length=60)  # "1 month", "day pass"
    amount_krw: int = Field(ge=0)


class BranchInfo(Event):
    """What a branch is, in full (not a diff): a reader can index it without history."""

    branch_id: str = Field(max_length=64)
    name: str = Field(max_length=100)
    address: str = Field(max_length=300)
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    open_24h: bool
    hours: tuple[OpeningHours, ...] = Field(default=(), max_length=14)
    facilities: tuple[str, ...] = Field(default=(), max_length=50)
    equipment: dict[str, int] = Field(default_factory=dict)  # kind -> how many
    prices: tuple[Price, ...] = Field(default=(), max_length=20)
    photo_urls: tuple[str, ...] = Field(default=(), max_length=20)
    # Grows by one with every change, so a reader can drop an older copy arriving late.
    revision: int = Field(ge=1)
    updated_at: datetime
    # Optional (tolerant readers): the owner's free text about the branch, and a closure
    # (closed for good or suspended: out of search results).
    description: str = Field(default="", max_length=4000)
    closed: bool = False


@CATALOG.register
class BranchInfoCreated(BranchInfo):
    event_name: ClassVar[str] = "BranchInfoCreated"
    event_version: ClassVar[int] = 1


@CATALOG.register
class BranchInfoUpdated(BranchInfo):
    event_name: ClassVar[str] = "BranchInfoUpdated"
    event_version: ClassVar[int] = 1


@CATALOG.register
class ReviewPosted(Event):
    """A member posted or edited their review of a branch (one per member and branch; an
    edit is the same ``review_id`` with a higher ``revision``)."""

    event_name: ClassVar[str] = "ReviewPosted"
    event_version: ClassVar[int] = 1

    review_id: uuid.UUID
    branch_id: str = Field(max_length=64)
    member_id: uuid.UUID
    rating: int = Field(ge=1, le=5)
    text: str = Field(max_length=2000)
    revision: int = Field(ge=1)
    posted_at: datetime


@CATALOG.register
class BranchPreferenceCreated(Event):
    """A branch's profile of tastes, so notices can be tailored: the language most members
    read and the topics they care about. ``facility_tags`` and ``usage_tags`` say where the
    topics came from (members' reviews and the branch's equipment; its entries)."""

    event_name: ClassVar[str] = "BranchPreferenceCreated"
    event_version: ClassVar[int] = 1

    preference_id: uuid.UUID
    branch_id: str = Field(max_length=64)
    default_locale: Literal["ko", "en"] = "ko"
    topics: tuple[str, ...] = Field(default=(), max_length=20)
    created_by: uuid.UUID
    facility_tags: tuple[str, ...] = Field(default=(), max_length=20)
    usage_tags: tuple[str, ...] = Field(default=(), max_length=20)
