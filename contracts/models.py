"""Learned models: mlops deploys a version of a model family, and every instance that
serves that family (facemodel for ``face``, helper's task judge for ``task_judge``)
fetches the pack from the object store, checks it, swaps it in and reports back.

A deployment reaches a share of the instances first (the canary): an instance takes part
when its stable bucket (a hash of its instance id and the deployment id, in [0, 1)) is
below ``canary_share``. Promotion to every instance is a new ``ModelDeployed`` with the
same version and ``canary_share`` 1.0; a rollback is a ``ModelDeployed`` of the version
to go back to, with ``action`` ``rollback`` (instances keep the previous engine loaded,
so a rollback needs no download when the previous version is the one asked for).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from common.events.envelope import Event
from contracts.catalog import CATALOG

ModelFamily = Literal["face", "task_judge"]
MODEL_VERSION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,79}$"


class PackFile(BaseModel):
    """One file of a model pack: where it lies in the object store and its digest."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$", description="File name inside the pack.")
    key: str = Field(max_length=300, description="Object-store key of the file.")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size_bytes: int = Field(ge=0)


@CATALOG.register
class ModelDeployed(Event):
    """Serve ``version`` of ``family`` on the instances this deployment reaches."""

    event_name: ClassVar[str] = "ModelDeployed"
    event_version: ClassVar[int] = 1

    deployment_id: uuid.UUID
    family: ModelFamily
    version: str = Field(pattern=MODEL_VERSION_PATTERN)
    action: Literal["deploy", "promote", "rollback"]
    canary_share: float = Field(gt=0, le=1)
    files: tuple[PackFile, ...] = Field(min_length=1, max_length=20)
    previous_version: str | None = Field(default=None, pattern=MODEL_VERSION_PATTERN)
    # For the face family: the embedding space the pack maps faces into. Instances refuse
    # a pack whose space differs from the enrolled vectors' unless mlops says the
    # re-enrolment plan for it was approved.
    embedding_space: str | None = Field(default=None, max_length=80)
    reenrolment_approved: bool = False
    deployed_at: datetime


@CATALOG.register
class ModelSwapReported(Event):
    """One instance's answer to a ``ModelDeployed``: now serving it, refused it (with the
    reason, still serving ``active_version``), or not in this deployment's share."""

    event_name: ClassVar[str] = "ModelSwapReported"
    event_version: ClassVar[int] = 1

    deployment_id: uuid.UUID
    family: ModelFamily
    version: str = Field(pattern=MODEL_VERSION_PATTERN)
    instance_id: str = Field(min_length=1, max_length=120)
    outcome: Literal["serving", "refused", "not_selected"]
    reason: str = Field(default="", max_length=300)
    active_version: str | None = Field(default=None, pattern=MODEL_VERSION_PATTERN)
    load_ms: float = Field(default=0, ge=0)
    swap_ms: float = Field(default=0, ge=0)
    reported_at: datetime


@CATALOG.register
class ModelSignalReported(Event):
    """The live signal of one instance's model over a window, for canary judgement:
    ``bad`` of ``samples`` went wrong (face: entries rejected at the gate; task judge:
    verdicts the owner overrode)."""

    event_name: ClassVar[str] = "ModelSignalReported"
    event_version: ClassVar[int] = 1

    family: ModelFamily
    version: str = Field(pattern=MODEL_VERSION_PATTERN)
    instance_id: str = Field(min_length=1, max_length=120)
    window_started_at: datetime
    window_ended_at: datetime
    samples: int = Field(ge=0)
    bad: int = Field(ge=0)


@CATALOG.register
class TrainingRequested(Event):
    """mlops queued a job for its training workers: train a new version of ``family``, or
    verify ``version``. The run's row in mlops' database is the job's truth (progress,
    lease, result); this message only wakes a worker, so a second delivery is harmless."""

    event_name: ClassVar[str] = "TrainingRequested"
    event_version: ClassVar[int] = 1

    run_id: uuid.UUID
    family: ModelFamily
    kind: Literal["train", "verify"]
    version: str | None = Field(default=None, pattern=MODEL_VERSION_PATTERN)
    requested_at: datetime
