"""helper's own tables."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Date, Float, Index, Integer, String, UniqueConstraint, Uuid
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from common.db import BigIntPK, UtcDateTime, service_metadata


class Base(DeclarativeBase):
    metadata = service_metadata()


class TaskType(Base):
    """A kind of task one branch pays for, with its reward and per-helper daily limit."""

    __tablename__ = "task_types"

    branch_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    code: Mapped[str] = mapped_column(String(40), primary_key=True)
    category: Mapped[str] = mapped_column(String(20))  # laundry | cleaning | restocking
    title: Mapped[str] = mapped_column(String(100))
    reward_krw: Mapped[int] = mapped_column(Integer)
    expected_photos: Mapped[int] = mapped_column(Integer)
    daily_limit: Mapped[int] = mapped_column(Integer)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class Binding(Base):
    """A helper may work at a branch: bound by its owner or an operator."""

    __tablename__ = "bindings"

    helper_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    branch_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    bound_by: Mapped[uuid.UUID] = mapped_column(Uuid)
    bound_at: Mapped[datetime] = mapped_column(UtcDateTime())


class DailyCount(Base):
    """Submissions of one task type by one helper on one local day: the limit's guard. One
    conditional UPDATE on this row serialises concurrent submissions."""

    __tablename__ = "daily_counts"

    helper_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    branch_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    task_type: Mapped[str] = mapped_column(String(40), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    used: Mapped[int] = mapped_column(Integer, default=0)


class Task(Base):
    __tablename__ = "tasks"
    __table_args__ = (
        # A retried upload (same client key) finds the task it already made.
        UniqueConstraint("helper_id", "client_key", name="uq_tasks_helper_client_key"),
        Index("ix_tasks_helper_submitted", "helper_id", "submitted_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    helper_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    branch_id: Mapped[str] = mapped_column(String(64))
    task_type: Mapped[str] = mapped_column(String(40))
    category: Mapped[str] = mapped_column(String(20))
    title: Mapped[str] = mapped_column(String(100))
    client_key: Mapped[str] = mapped_column(String(64))
    reward_krw: Mapped[int] = mapped_column(Integer)
    expected_photos: Mapped[int] = mapped_column(Integer)
    photo_count: Mapped[int] = mapped_column(Integer)
    # submitted → judged → approved | rejected
    status: Mapped[str] = mapped_column(String(16))
    submitted_at: Mapped[datetime] = mapped_column(UtcDateTime())
    judged_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    outcome: Mapped[str | None] = mapped_column(String(16), nullable=True)
    confidence: Mapped[float | None] = mapped_column(Float, nullable=True)
    reasons: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    model_version: Mapped[str | None] = mapped_column(String(80), nullable=True)
    decided_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    decision_reason: Mapped[str | None] = mapped_column(String(300), nullable=True)


class TaskPhoto(Base):
    """One stored photo of a task; ``phash`` finds re-submissions of the same picture."""

    __tablename__ = "task_photos"
    __table_args__ = (Index("ix_task_photos_branch_submitted", "branch_id", "submitted_at"),)

    task_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    branch_id: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(300), unique=True)
    sha256: Mapped[str] = mapped_column(String(64))
    content_type: Mapped[str] = mapped_column(String(20))
    size_bytes: Mapped[int] = mapped_column(Integer)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    captured_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    phash: Mapped[int] = mapped_column(BigInteger)  # 64 bits, signed
    submitted_at: Mapped[datetime] = mapped_column(UtcDateTime())


class LedgerEntry(Base):
    """Append-only: rows are never updated or deleted; a helper's balance is their sum.

    ``source_event_id`` makes an entry once per event; ``source`` (e.g. ``task:<id>``)
    makes it once per business fact, even if that fact were published twice.
    """

    __tablename__ = "ledger_entries"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    helper_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    kind: Mapped[str] = mapped_column(String(20))  # task_reward | payout | payout_reversal
    amount_krw: Mapped[int] = mapped_column(BigInteger)  # credits > 0, debits < 0
    source: Mapped[str] = mapped_column(String(80), unique=True)
    source_event_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, unique=True, nullable=True)
    task_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    payout_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class Payout(Base):
    """A helper's request to be paid out: requested → approved → paid, or rejected (the
    held amount returns to the balance)."""

    __tablename__ = "payouts"
    __table_args__ = (UniqueConstraint("helper_id", "client_key", name="uq_payouts_helper_client_key"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    helper_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    client_key: Mapped[str] = mapped_column(String(64))
    amount_krw: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(12))
    requested_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())
    note: Mapped[str | None] = mapped_column(String(200), nullable=True)


class Account(Base):
    """One row per helper who has asked for a payout: the lock that keeps two concurrent
    requests from spending the same balance twice."""

    __tablename__ = "accounts"

    helper_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
