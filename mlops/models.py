"""mlops' own tables: the model registry, deployments, instances' reports, labels and
training runs."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Float, Index, Integer, String, Text, UniqueConstraint, Uuid
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from common.db import BigIntPK, UtcDateTime, service_metadata


class Base(DeclarativeBase):
    metadata = service_metadata()


class ModelVersion(Base):
    """One version of a model family: its pack files, metrics and lineage.

    status: candidate → verified → deployed → retired; ``rejected`` when the verification
    gate refused it (its reasons in ``verification``)."""

    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("family", "version", name="uq_model_versions_family_version"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    family: Mapped[str] = mapped_column(String(20))
    version: Mapped[str] = mapped_column(String(80))
    status: Mapped[str] = mapped_column(String(12))
    # [{name, key, sha256, size_bytes}] as in contracts.models.PackFile
    files: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    verification: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    data_snapshot_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    code_version: Mapped[str] = mapped_column(String(80))
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    parent_version: Mapped[str | None] = mapped_column(String(80), nullable=True)
    embedding_space: Mapped[str | None] = mapped_column(String(80), nullable=True)
    run_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True, unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    verified_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    deployed_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    retired_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)


class FamilyState(Base):
    """What a family serves now: the stable version (every instance), the one before it
    (for a rollback) and a canary on a share of the instances. Its row lock serialises
    deploy, promote and rollback of one family."""

    __tablename__ = "family_states"

    family: Mapped[str] = mapped_column(String(20), primary_key=True)
    stable_version: Mapped[str | None] = mapped_column(String(80), nullable=True)
    stable_deployment_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    previous_version: Mapped[str | None] = mapped_column(String(80), nullable=True)
    canary_version: Mapped[str | None] = mapped_column(String(80), nullable=True)
    canary_deployment_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class Deployment(Base):
    """One ModelDeployed published: deploy (canary or full), promote or rollback."""

    __tablename__ = "deployments"
    __table_args__ = (Index("ix_deployments_family_started", "family", "started_at"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    family: Mapped[str] = mapped_column(String(20))
    version: Mapped[str] = mapped_column(String(80))
    action: Mapped[str] = mapped_column(String(10))
    canary_share: Mapped[float] = mapped_column(Float)
    previous_version: Mapped[str | None] = mapped_column(String(80), nullable=True)
    reenrolment_approved: Mapped[bool] = mapped_column(Boolean, default=False)
    requested_by: Mapped[str] = mapped_column(String(120))  # a person's id, or "mlops" (automatic)
    reason: Mapped[str] = mapped_column(String(300), default="")
    started_at: Mapped[datetime] = mapped_column(UtcDateTime())


class SwapReport(Base):
    """The last answer of one instance to one deployment."""

    __tablename__ = "swap_reports"

    deployment_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    instance_id: Mapped[str] = mapped_column(String(120), primary_key=True)
    family: Mapped[str] = mapped_column(String(20))
    version: Mapped[str] = mapped_column(String(80))
    outcome: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(300), default="")
    active_version: Mapped[str | None] = mapped_column(String(80), nullable=True)
    load_ms: Mapped[float] = mapped_column(Float, default=0)
    swap_ms: Mapped[float] = mapped_column(Float, default=0)
    reported_at: Mapped[datetime] = mapped_column(UtcDateTime())


class ModelSignal(Base):
    """One instance's live signal for one version over one window."""

    __tablename__ = "model_signals"
    __table_args__ = (Index("ix_model_signals_family_version_window", "family", "version", "window_started_at"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    family: Mapped[str] = mapped_column(String(20))
    version: Mapped[str] = mapped_column(String(80))
    instance_id: Mapped[str] = mapped_column(String(120))
    window_started_at: Mapped[datetime] = mapped_column(UtcDateTime())
    window_ended_at: Mapped[datetime] = mapped_column(UtcDateTime())
    samples: Mapped[int] = mapped_column(Integer)
    bad: Mapped[int] = mapped_column(Integer)


class TaskLabel(Base):
    """An owner's final label of a task (from TaskConfirmed): the training data's labels.
    ``corrected`` when it differs from the AI's verdict."""

    __tablename__ = "task_labels"
    __table_args__ = (Index("ix_task_labels_decided", "decided_at"),)

    task_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    helper_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    branch_id: Mapped[str] = mapped_column(String(64))
    task_type: Mapped[str] = mapped_column(String(40))
    final_label: Mapped[str] = mapped_column(String(10))  # done | not_done
    ai_outcome: Mapped[str] = mapped_column(String(16))
    corrected: Mapped[bool] = mapped_column(Boolean)
    decided_at: Mapped[datetime] = mapped_column(UtcDateTime())
    # Position among corrections (1, 2, ...) so "new corrections since the last run" is
    # one comparison; null for agreements.
    correction_seq: Mapped[int | None] = mapped_column(BigInteger, nullable=True, unique=True)


class TrainingRun(Base):
    """A training (or verification) job: queued → running → succeeded | failed | cancelled.

    A worker claims it with a lease (``lease_owner``, ``lease_until``) renewed as it reports
    progress; a second delivery of the same job finds it claimed or finished, so a job
    completes once however often the broker hands it out."""

    __tablename__ = "training_runs"
    __table_args__ = (Index("ix_training_runs_family_created", "family", "created_at"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    family: Mapped[str] = mapped_column(String(20))
    kind: Mapped[str] = mapped_column(String(10))  # train | verify
    status: Mapped[str] = mapped_column(String(12))
    trigger: Mapped[str] = mapped_column(String(20))  # corrections | operator
    requested_by: Mapped[str] = mapped_column(String(120))
    # For a verify job: the version to verify; for a train job: the version it produced.
    version: Mapped[str | None] = mapped_column(String(80), nullable=True)
    # The correction count this run was queued at (its trigger mark).
    corrections_mark: Mapped[int] = mapped_column(BigInteger, default=0)
    step: Mapped[str] = mapped_column(String(40), default="queued")
    progress: Mapped[float] = mapped_column(Float, default=0)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(120), nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    result: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
