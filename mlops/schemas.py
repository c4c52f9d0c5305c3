"""Request and response bodies of mlops' API (inputs refuse unknown fields)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from contracts import PackFile
from contracts.models import MODEL_VERSION_PATTERN

Family = Literal["face", "task_judge"]
Status = Literal["candidate", "verified", "rejected", "deployed", "retired"]


class DeployIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: str = Field(pattern=MODEL_VERSION_PATTERN)
    canary_share: float | None = Field(
        default=None, gt=0, le=1, description="Share of instances first; unset: the configured canary share."
    )
    reenrolment_approved: bool = Field(
        default=False, description="Face packs in a new embedding space: the re-enrolment plan was approved."
    )


class RollbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="", max_length=300)


class VersionPublic(BaseModel):
    family: Family
    version: str
    status: Status
    files: list[PackFile]
    metrics: dict[str, Any]
    verification: dict[str, Any]
    data_snapshot_id: str | None
    code_version: str
    parameters: dict[str, Any]
    parent_version: str | None
    embedding_space: str | None
    run_id: uuid.UUID | None
    created_at: datetime
    verified_at: datetime | None
    deployed_at: datetime | None
    retired_at: datetime | None


class SwapReportPublic(BaseModel):
    instance_id: str
    version: str
    outcome: str
    reason: str
    active_version: str | None
    load_ms: float
    swap_ms: float
    reported_at: datetime


class DeploymentPublic(BaseModel):
    deployment_id: uuid.UUID
    family: Family
    version: str
    action: Literal["deploy", "promote", "rollback"]
    canary_share: float
    previous_version: str | None
    reenrolment_approved: bool
    requested_by: str
    reason: str
    started_at: datetime
    reports: list[SwapReportPublic] = Field(default_factory=list)


class ServedPack(BaseModel):
    """What an instance needs to serve a version: the deployment that put it there and its
    files (as in ModelDeployed)."""

    deployment_id: uuid.UUID
    version: str
    action: Literal["deploy", "promote", "rollback"]
    canary_share: float
    files: list[PackFile]
    embedding_space: str | None
    reenrolment_approved: bool
    deployed_at: datetime


class DeployedPublic(BaseModel):
    family: Family
    stable: ServedPack | None
    canary: ServedPack | None
    previous_version: str | None


class CanaryPublic(BaseModel):
    family: Family
    canary_version: str | None
    baseline_version: str | None
    canary_bad: int = 0
    canary_samples: int = 0
    baseline_bad: int = 0
    baseline_samples: int = 0
    decided: bool = False
    worse: bool = False


class RunPublic(BaseModel):
    run_id: uuid.UUID
    family: Family
    kind: Literal["train", "verify"]
    status: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    trigger: str
    requested_by: str
    version: str | None
    step: str
    progress: float
    cancel_requested: bool
    attempts: int
    result: dict[str, Any]
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
