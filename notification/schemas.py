from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from zoneinfo import available_timezones

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from common.db import MAX_ROW_ID

HH_MM = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"


class InboxMessagePublic(BaseModel):
    id: int
    kind: str
    title: str
    body: str
    created_at: datetime
    read: bool
    critical: bool


class InboxPage(BaseModel):
    messages: list[InboxMessagePublic]
    unread: int
    next_before_id: int | None


class MarkReadIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    message_ids: list[Annotated[int, Field(ge=1, le=MAX_ROW_ID)]] = Field(min_length=1, max_length=500)


class PushTokenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # FCM registration tokens are ~150-200 characters of URL-safe base64 and ':'.
    token: str = Field(min_length=20, max_length=512, pattern=r"^[A-Za-z0-9_:\-.]+$")
    platform: Literal["android", "ios", "web"]


class PreferencesBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    locale: Literal["ko", "en"] | None = None
    push_enabled: bool = True
    quiet_start: str | None = Field(default=None, pattern=HH_MM)
    quiet_end: str | None = Field(default=None, pattern=HH_MM)
    timezone: str = "Asia/Seoul"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        if value not in available_timezones():
            raise ValueError(f"unknown timezone {value!r}")
        return value

    @model_validator(mode="after")
    def _both_or_neither(self) -> PreferencesBody:
        if (self.quiet_start is None) != (self.quiet_end is None):
            raise ValueError("give both quiet_start and quiet_end, or neither")
        if self.quiet_start is not None and self.quiet_start == self.quiet_end:
            raise ValueError("quiet hours need a start different from their end")
        return self
