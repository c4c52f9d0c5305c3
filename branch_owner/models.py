"""branch_owner's own tables."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Float, Index, Integer, String, Text, UniqueConstraint, Uuid
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from common.db import UtcDateTime, service_metadata


class Base(DeclarativeBase):
    metadata = service_metadata()


class Branch(Base):
    """A branch's public profile; ``revision`` grows with every change."""

    __tablename__ = "branches"

    branch_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    address: Mapped[str] = mapped_column(String(300))
    lat: Mapped[float] = mapped_column(Float)
    lon: Mapped[float] = mapped_column(Float)
    open_24h: Mapped[bool] = mapped_column(Boolean)
    hours: Mapped[list[dict[str, str]]] = mapped_column(JSON)
    facilities: Mapped[list[str]] = mapped_column(JSON)
    equipment: Mapped[dict[str, int]] = mapped_column(JSON)
    prices: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    photo_urls: Mapped[list[str]] = mapped_column(JSON)
    revision: Mapped[int] = mapped_column(Integer)
    updated_by: Mapped[uuid.UUID] = mapped_column(Uuid)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class BranchPhoto(Base):
    """A photo uploaded for a branch's profile; its bytes are in the photo store under
    ``key`` (re-encoded on upload, so no EXIF from the owner's phone survives)."""

    __tablename__ = "branch_photos"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    branch_id: Mapped[str] = mapped_column(String(64), index=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)
    content_type: Mapped[str] = mapped_column(String(20))
    size_bytes: Mapped[int] = mapped_column(Integer)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    uploaded_by: Mapped[uuid.UUID] = mapped_column(Uuid)
    uploaded_at: Mapped[datetime] = mapped_column(UtcDateTime())


class QueueItem(Base):
    """branch_owner's own copy of a judged task, waiting for (or given) the owner's word."""

    __tablename__ = "review_queue"
    __table_args__ = (
        # The owner's page: one branch's pending tasks, oldest verdict first.
        Index("ix_review_queue_branch_status_judged", "branch_id", "status", "judged_at", "task_id"),
        Index("ix_review_queue_status_judged", "status", "judged_at"),
    )

    task_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    branch_id: Mapped[str] = mapped_column(String(64))
    helper_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    task_type: Mapped[str] = mapped_column(String(40))
    title: Mapped[str] = mapped_column(String(100))
    reward_krw: Mapped[int] = mapped_column(Integer)
    photos: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    submitted_at: Mapped[datetime] = mapped_column(UtcDateTime())
    judged_at: Mapped[datetime] = mapped_column(UtcDateTime())
    outcome: Mapped[str] = mapped_column(String(16))
    confidence: Mapped[float] = mapped_column(Float)
    reasons: Mapped[list[dict[str, str]]] = mapped_column(JSON)
    model_version: Mapped[str] = mapped_column(String(80))
    status: Mapped[str] = mapped_column(String(12))  # pending | approved | rejected
    decided_by: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    decided_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    decision_reason: Mapped[str | None] = mapped_column(String(300), nullable=True)
    ai_overridden: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    reminded_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)


class Review(Base):
    """A member's review of a branch: one per member and branch, editable."""

    __tablename__ = "reviews"
    __table_args__ = (
        UniqueConstraint("branch_id", "member_id", name="uq_reviews_branch_member"),
        Index("ix_reviews_branch_updated", "branch_id", "updated_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    branch_id: Mapped[str] = mapped_column(String(64))
    member_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    rating: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    revision: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())
    reply: Mapped[str | None] = mapped_column(Text, nullable=True)
    replied_by: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    replied_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    reports: Mapped[int] = mapped_column(Integer, default=0)


class ReviewReport(Base):
    """Somebody reported a review as abusive (once per person and review)."""

    __tablename__ = "review_reports"

    review_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    reporter_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    reason: Mapped[str] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class EntryCount(Base):
    """Entries into a branch per local weekday and hour, from AccessGranted."""

    __tablename__ = "entry_counts"

    branch_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    weekday: Mapped[int] = mapped_column(Integer, primary_key=True)  # 0 = Monday
    hour: Mapped[int] = mapped_column(Integer, primary_key=True)
    entries: Mapped[int] = mapped_column(Integer, default=0)


class Preference(Base):
    """The last preference profile derived for a branch."""

    __tablename__ = "preferences"

    branch_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    preference_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    facility_tags: Mapped[list[str]] = mapped_column(JSON)
    usage_tags: Mapped[list[str]] = mapped_column(JSON)
    created_by: Mapped[uuid.UUID] = mapped_column(Uuid)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
