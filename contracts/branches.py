"""Branch profiles and preferences."""

from __future__ import annotations

import uuid
from typing import ClassVar, Literal

from pydantic import Field

from common.events.envelope import Event
from contracts.catalog import CATALOG


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
