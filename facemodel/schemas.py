"""facemodel's HTTP shapes."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


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


class IdentificationOut(BaseModel):
    analysis: AnalysisOut
    matches: list[MatchOut]
    threshold: float
    match: MatchOut | None  # the best match if it clears the threshold


class VerificationOut(BaseModel):
    analysis: AnalysisOut
    similarity: float | None
    threshold: float
    same_person: bool


class VectorIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    embedding: list[float] = Field(min_length=1, max_length=4096)
    embedding_space: str


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
    embedding_space: str
    threshold: float
    swap_count: int
    galleries: dict[str, int]


class SwapOut(BaseModel):
    previous: str | None
    active: str
    load_ms: float
    swap_ms: float
