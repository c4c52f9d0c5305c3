"""Helpers' tasks and their verdicts."""

from __future__ import annotations

import uuid
from typing import ClassVar, Literal

from pydantic import Field

from common.events.envelope import Event
from contracts.catalog import CATALOG


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
