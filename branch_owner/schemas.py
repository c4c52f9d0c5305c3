"""branch_owner's request and response bodies."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, field_validator

from contracts import OpeningHours, Price

TAG = r"^[a-z][a-z0-9_]{0,39}$"


class OpeningHoursIn(OpeningHours):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PriceIn(Price):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(min_length=1, max_length=60)
    # ₩100 million is past any membership; the bound keeps a typo from the search index,
    # whose price column holds 32 bits (a larger one would park the branch's event).
    amount_krw: int = Field(ge=0, le=100_000_000)


class BranchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=100)
    address: str = Field(min_length=1, max_length=300)
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    # Leave empty for a branch open around the clock (the default of an unmanned gym).
    hours: list[OpeningHoursIn] = Field(default_factory=list, max_length=14)
    facilities: list[str] = Field(default_factory=list, max_length=50)
    equipment: dict[str, int] = Field(default_factory=dict, max_length=50)
    prices: list[PriceIn] = Field(default_factory=list, max_length=20)
    photo_urls: list[HttpUrl] = Field(default_factory=list, max_length=20)

    @field_validator("facilities")
    @classmethod
    def _tags(cls, value: list[str]) -> list[str]:
        import re

        for item in value:
            if not re.match(TAG, item):
                raise ValueError(f"facility {item!r} is not a lower-case tag like 'shower'")
        return sorted(set(value))

    @field_validator("equipment")
    @classmethod
    def _counts(cls, value: dict[str, int]) -> dict[str, int]:
        import re

        for kind, count in value.items():
            if not re.match(TAG, kind) or not 0 <= count <= 10_000:
                raise ValueError(f"equipment {kind!r}: a lower-case kind and a count 0-10000")
        return value


class BranchPublic(BaseModel):
    branch_id: str
    name: str
    address: str
    lat: float
    lon: float
    open_24h: bool
    hours: list[dict[str, str]]
    facilities: list[str]
    equipment: dict[str, int]
    prices: list[dict[str, Any]]
    # Links the owner typed; uploaded photos are in ``photos``.
    photo_urls: list[str]
    photos: list[BranchPhotoPublic] = Field(default_factory=list)
    revision: int
    updated_at: datetime


class BranchPhotoPublic(BaseModel):
    id: uuid.UUID
    # The photo's path behind the gateway (fetched with the caller's token).
    url: str
    width: int
    height: int
    size_bytes: int
    uploaded_at: datetime


class ReasonPublic(BaseModel):
    code: str
    message: str


class QueueItemPublic(BaseModel):
    task_id: uuid.UUID
    branch_id: str
    helper_id: uuid.UUID
    task_type: str
    title: str
    reward_krw: int
    # Paths of the photos behind the gateway (helper serves them to the branch's staff).
    photo_urls: list[str]
    submitted_at: datetime
    judged_at: datetime
    verdict: Literal["pass", "fail", "needs_review"]
    confidence: float
    reasons: list[ReasonPublic]
    model_version: str
    status: Literal["pending", "approved", "rejected"]
    waiting_s: float
    overdue: bool
    decided_at: datetime | None
    decision_reason: str | None
    ai_overridden: bool | None


class QueuePage(BaseModel):
    items: list[QueueItemPublic]
    next_after: str | None


class DecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    decision: Literal["approve", "reject"]
    reason: str = Field(default="", max_length=300)


class BulkDecisionIn(DecisionIn):
    task_ids: list[uuid.UUID] = Field(min_length=1, max_length=100)


class DecisionResult(BaseModel):
    task_id: uuid.UUID
    result: str
    ok: bool


class ReviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rating: int = Field(ge=1, le=5)
    text: str = Field(min_length=1, max_length=2000)


class ReplyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1, max_length=2000)


class ReportIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=300)


class ReviewPublic(BaseModel):
    id: uuid.UUID
    branch_id: str
    member_id: uuid.UUID
    rating: int
    text: str
    revision: int
    updated_at: datetime
    reply: str | None
    replied_at: datetime | None
    reports: int | None  # staff only


class PreferencePublic(BaseModel):
    branch_id: str
    preference_id: uuid.UUID
    facility_tags: list[str]
    usage_tags: list[str]
    created_at: datetime
