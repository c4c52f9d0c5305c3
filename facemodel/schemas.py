"""facemodel's HTTP shapes."""

from __future__ import annotations

import base64

from pydantic import BaseModel, ConfigDict, Field, field_validator


class QualityOut(BaseModel):
    ok: bool
    reason: str | None
    code: str | None


class AnalysisOut(BaseModel):
    model: str
    faces_seen: int
    box: list[float] | None
    score: float | None
    quality: QualityOut
    embedding: list[float] | None
    timings_ms: dict[str, float]


class QualityVerdictOut(BaseModel):
    model: str
    faces_seen: int
    box: list[float] | None
    quality: QualityOut


class MatchOut(BaseModel):
    subject: str
    similarity: float


class LivenessOut(BaseModel):
    ok: bool
    code: str | None  # why not: identical_frames, no_face_in_every_frame, identity_changed, no_head_turn, ...
    yaw_change: float | None


class IdentificationOut(BaseModel):
    analysis: AnalysisOut
    matches: list[MatchOut]
    threshold: float
    match: MatchOut | None  # the best match if it clears the threshold
    liveness: LivenessOut | None = None  # burst requests only


class BurstIn(BaseModel):
    """A short burst of camera frames (JPEG or PNG, base64), first frame first."""

    model_config = ConfigDict(extra="forbid")
    frames: list[str] = Field(min_length=2, max_length=4)

    @field_validator("frames")
    @classmethod
    def _frames_are_bounded(cls, frames: list[str]) -> list[str]:
        for frame in frames:
            if not 16 <= len(frame) <= 4 * 1024 * 1024:
                raise ValueError("each frame must be a base64 image of at most 3 MiB")
        return frames

    def decoded(self) -> list[bytes]:
        """The frames' bytes; raises ValueError on bad base64."""
        return [base64.b64decode(frame, validate=True) for frame in self.frames]


class VerificationOut(BaseModel):
    analysis: AnalysisOut
    similarity: float | None
    threshold: float
    same_person: bool


class VectorIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    embedding: list[float] = Field(min_length=1, max_length=4096)
    embedding_space: str


class ProbeIn(BaseModel):
    """A face vector to match against a gallery (access's miss path: the frame was already
    analysed, so only the scan is left to do)."""

    model_config = ConfigDict(extra="forbid")
    embedding: list[float] = Field(min_length=1, max_length=4096)
    embedding_space: str = Field(min_length=1, max_length=100)
    k: int = Field(default=1, ge=1, le=20, description="How many of the most similar subjects to return.")


class MatchesOut(BaseModel):
    matches: list[MatchOut]
    threshold: float
    match: MatchOut | None  # the best match if it clears the threshold


class SubjectVectorIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    subject: str = Field(min_length=1, max_length=200)
    embedding: list[float] = Field(min_length=1, max_length=4096)


class VectorsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    embedding_space: str
    subjects: list[SubjectVectorIn] = Field(min_length=1, max_length=5000)


class SubjectsOut(BaseModel):
    subjects: list[str]


class DeployIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    pack: str = Field(min_length=1, max_length=500)


class ModelStatus(BaseModel):
    active: str
    previous: str | None
    # The registry's versions (mlops' names for them; a pack loaded at start: its own version).
    active_version: str
    previous_version: str | None
    embedding_space: str
    threshold: float
    swap_count: int
    galleries: dict[str, int]


class SwapOut(BaseModel):
    previous: str | None
    active: str
    load_ms: float
    swap_ms: float
