"""Helpers' tasks: submitted with photos, judged by the task judge, decided by the branch owner.

Photos never travel in events: only references into helper's photo store (a key, its
digest and what the judge needs to know about it without reading it).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from common.events.envelope import Event
from contracts.catalog import CATALOG

TaskCategory = Literal["laundry", "cleaning", "restocking"]
VerdictOutcome = Literal["pass", "fail", "needs_review"]
BRANCH_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"


@CATALOG.register
class TaskJudged(Event):
    """The AI checked a helper's task: approved tasks are paid ``payout_krw``.

    Superseded by version 2 (three outcomes, reasons, the model version); kept so that
    readers of version 1 still decode what is stored or in flight.
    """

    event_name: ClassVar[str] = "TaskJudged"
    event_version: ClassVar[int] = 1

    task_id: uuid.UUID
    helper_id: uuid.UUID
    branch_id: str = Field(max_length=64)
    verdict: Literal["approved", "rejected"]
    score: float = Field(ge=0, le=1)
    reason: str = Field(default="", max_length=200)
    payout_krw: int = Field(default=0, ge=0)


class PhotoRef(BaseModel):
    """Where one task photo lies in helper's photo store, and what is known about it."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    key: str = Field(max_length=300)
    sha256: str = Field(min_length=64, max_length=64)
    content_type: Literal["image/jpeg", "image/png"]
    size_bytes: int = Field(ge=1)
    width: int = Field(ge=1)
    height: int = Field(ge=1)
    # From the photo's EXIF before it was stripped; None when the camera wrote none.
    captured_at: datetime | None = None


class VerdictReason(BaseModel):
    """One failed (or undecided) check: a stable code for programs, a message for people."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    code: str = Field(max_length=40)
    message: str = Field(max_length=300)


@CATALOG.register
class TaskSubmitted(Event):
    """A helper submitted a task with its photos; it waits for the judge."""

    event_name: ClassVar[str] = "TaskSubmitted"
    event_version: ClassVar[int] = 1

    task_id: uuid.UUID
    helper_id: uuid.UUID
    branch_id: str = Field(max_length=64)
    task_type: str = Field(max_length=40)
    category: TaskCategory
    title: str = Field(max_length=100)
    reward_krw: int = Field(ge=0)
    expected_photos: int = Field(ge=1, le=5)
    photos: tuple[PhotoRef, ...] = Field(min_length=1, max_length=5)
    submitted_at: datetime


@CATALOG.register
class TaskJudgedV2(Event):
    """The task judge's verdict. ``fail`` and ``needs_review`` carry their reasons;
    ``model_version`` names the learned model that took part ("none" when none did).
    Nothing is paid on a verdict: the branch owner decides (TaskConfirmed)."""

    event_name: ClassVar[str] = "TaskJudged"
    event_version: ClassVar[int] = 2

    task_id: uuid.UUID
    helper_id: uuid.UUID
    branch_id: str = Field(max_length=64)
    task_type: str = Field(max_length=40)
    category: TaskCategory
    title: str = Field(max_length=100)
    reward_krw: int = Field(ge=0)
    photos: tuple[PhotoRef, ...] = Field(max_length=5)
    submitted_at: datetime
    judged_at: datetime
    outcome: VerdictOutcome
    confidence: float = Field(ge=0, le=1)
    reasons: tuple[VerdictReason, ...] = Field(default=(), max_length=20)
    model_version: str = Field(max_length=80)


@CATALOG.register
class TaskConfirmed(Event):
    """The branch owner's final decision on a task. ``approved`` tasks are paid
    ``reward_krw`` once; ``final_label`` is the training label (the owner's word wins over
    the AI's, and ``ai_overridden`` says when it differed)."""

    event_name: ClassVar[str] = "TaskConfirmed"
    event_version: ClassVar[int] = 1

    task_id: uuid.UUID
    helper_id: uuid.UUID
    branch_id: str = Field(max_length=64)
    task_type: str = Field(max_length=40)
    decision: Literal["approved", "rejected"]
    final_label: Literal["done", "not_done"]
    ai_outcome: VerdictOutcome
    ai_overridden: bool
    reason: str = Field(default="", max_length=300)
    reward_krw: int = Field(ge=0)
    decided_by: uuid.UUID
    decided_at: datetime


@CATALOG.register
class TaskReviewOverdue(Event):
    """A judged task has waited longer than the review SLA for the branch owner."""

    event_name: ClassVar[str] = "TaskReviewOverdue"
    event_version: ClassVar[int] = 1

    task_id: uuid.UUID
    helper_id: uuid.UUID
    branch_id: str = Field(max_length=64)
    task_type: str = Field(max_length=40)
    title: str = Field(max_length=100)
    judged_at: datetime
    waited_s: float = Field(ge=0)


@CATALOG.register
class PayoutStatusChanged(Event):
    """A helper's payout moved: approved or rejected (by head office, or by the owner of a
    branch the helper works at, named in ``branch_id``), or paid by head office. A
    rejected payout's amount is back in the helper's balance."""

    event_name: ClassVar[str] = "PayoutStatusChanged"
    event_version: ClassVar[int] = 1

    payout_id: uuid.UUID
    helper_id: uuid.UUID
    amount_krw: int = Field(ge=0)
    previous_status: Literal["requested", "approved"]
    status: Literal["approved", "paid", "rejected"]
    note: str | None = Field(default=None, max_length=200)
    changed_by: uuid.UUID
    # The branch whose owner acted; None when head office did.
    branch_id: str | None = Field(default=None, max_length=64)
    changed_at: datetime
