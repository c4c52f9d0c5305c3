"""access's HTTP shapes."""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PassIn(Input):
    # A signed entry pass is ~600 characters; anything far longer is not one.
    code: str = Field(min_length=20, max_length=2048)


class ReasonIn(Input):
    reason: str = Field(min_length=3, max_length=300)


class GateOut(BaseModel):
    gate_id: str
    branch_id: str
    direction: str
    driver: str
    line: str  # up | down
    line_detail: str
    line_down_policy: str
    anti_passback: bool


class FaceBurstIn(BaseModel):
    """2-4 camera frames of the head turn the kiosk asked for (base64 JPEG/PNG), in order."""

    model_config = ConfigDict(extra="forbid")
    frames: list[str] = Field(min_length=2, max_length=4)

    @field_validator("frames")
    @classmethod
    def _frames_are_images(cls, frames: list[str]) -> list[str]:
        for frame in frames:
            if not 16 <= len(frame) <= 2 * 1024 * 1024:
                raise ValueError("each frame must be a base64 image of at most 1.5 MiB")
            try:
                base64.b64decode(frame, validate=True)
            except binascii.Error as exc:
                raise ValueError("frames must be base64") from exc
        return frames

    def decoded(self) -> list[bytes]:
        return [base64.b64decode(frame) for frame in self.frames]


class DecisionOut(BaseModel):
    attempt_id: uuid.UUID
    granted: bool
    reason: str  # the code the kiosk shows (see access.rules.Reason)
    detail: str | None = None  # what to do about it, for poor-quality faces
    member_id: uuid.UUID | None
    gate_id: str
    gate_result: str
    offline: bool
    latency_ms: float
    similarity: float | None = None
    model: str | None = None
    cache: str | None = None
    timings_ms: dict[str, float] = Field(default_factory=dict)


class AttemptOut(BaseModel):
    id: int
    attempt_id: uuid.UUID
    decided_at: datetime
    branch_id: str
    gate_id: str
    direction: str
    method: str
    member_id: uuid.UUID | None
    outcome: str
    reason: str
    similarity: float | None
    model: str | None
    latency_ms: float
    gate_result: str
    offline: bool


class AttemptPage(BaseModel):
    items: list[AttemptOut]
    next_before_id: int | None  # pass as before_id for the next (older) page


class OccupancyOut(BaseModel):
    branch_id: str
    inside: int
    limit: int | None


class PassbackResetOut(BaseModel):
    was_inside: bool
