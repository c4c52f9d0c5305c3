"""helper's request and response bodies."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

CODE = r"^[a-z][a-z0-9_]{0,39}$"
CLIENT_KEY = r"^[A-Za-z0-9_-]{8,64}$"


class TaskTypeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    category: Literal["laundry", "cleaning", "restocking"]
    title: str = Field(min_length=1, max_length=100)
    reward_krw: int = Field(ge=0, le=1_000_000)
    expected_photos: int = Field(default=1, ge=1, le=5)
    daily_limit: int = Field(default=10, ge=1, le=500)
    active: bool = True


class TaskTypePublic(BaseModel):
    branch_id: str
    code: str
    category: str
    title: str
    reward_krw: int
    expected_photos: int
    daily_limit: int
    active: bool


class ReasonPublic(BaseModel):
    code: str
    message: str


class TaskPublic(BaseModel):
    id: uuid.UUID
    branch_id: str
    task_type: str
    title: str
    reward_krw: int
    status: Literal["submitted", "judged", "approved", "rejected"]
    submitted_at: datetime
    photos: int
    verdict: Literal["pass", "fail", "needs_review"] | None
    confidence: float | None
    reasons: list[ReasonPublic]
    model_version: str | None
    decided_at: datetime | None
    decision_reason: str | None


class TaskPage(BaseModel):
    tasks: list[TaskPublic]
    next_before: datetime | None


class BalancePublic(BaseModel):
    helper_id: uuid.UUID
    balance_krw: int


class LedgerEntryPublic(BaseModel):
    id: int
    kind: str
    amount_krw: int
    task_id: uuid.UUID | None
    payout_id: uuid.UUID | None
    created_at: datetime


class LedgerPage(BaseModel):
    entries: list[LedgerEntryPublic]
    next_before_id: int | None


class PayoutIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    amount_krw: int = Field(ge=1, le=100_000_000)
    client_key: str = Field(pattern=CLIENT_KEY)


class PayoutMoveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: Literal["approved", "paid", "rejected"]
    note: str | None = Field(default=None, max_length=200)


class PayoutPublic(BaseModel):
    id: uuid.UUID
    amount_krw: int
    status: str
    requested_at: datetime
    updated_at: datetime
    note: str | None


class BranchPayoutPublic(PayoutPublic):
    """A payout as the helper's branch sees it: whose, and what they earned at this branch."""

    helper_id: uuid.UUID
    earned_here_krw: int


def reasons_of(raw: list[dict[str, Any]]) -> list[ReasonPublic]:
    return [ReasonPublic(code=str(item.get("code", "")), message=str(item.get("message", ""))) for item in raw]


class ModelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # A directory name under the packs directory, never a path.
    pack: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")


class ModelPublic(BaseModel):
    model_version: str
