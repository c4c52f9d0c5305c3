"""notification's own tables."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Index, Integer, String, Text, UniqueConstraint, Uuid
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from common.db import BigIntPK, UtcDateTime, service_metadata


class Base(DeclarativeBase):
    metadata = service_metadata()


class InboxMessage(Base):
    """One notice in a user's in-app inbox."""

    __tablename__ = "inbox_messages"
    # The event that caused the notice: a second copy of an event can never add a second
    # notice for the same person.
    __table_args__ = (UniqueConstraint("user_id", "source_event_id", name="uq_inbox_messages_user_event"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    kind: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    source_event_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    read_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    critical: Mapped[bool] = mapped_column(Boolean, default=False)


class Recipient(Base):
    """Who a user is to notification (roles and branches from their last token) and how
    they want to be told."""

    __tablename__ = "recipients"

    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    roles: Mapped[list[str]] = mapped_column(JSON)
    branches: Mapped[list[str]] = mapped_column(JSON)
    locale: Mapped[str | None] = mapped_column(String(5), nullable=True)
    push_enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    quiet_start: Mapped[str | None] = mapped_column(String(5), nullable=True)  # "22:00"
    quiet_end: Mapped[str | None] = mapped_column(String(5), nullable=True)  # "07:00"
    timezone: Mapped[str] = mapped_column(String(64), default="Asia/Seoul")
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class PushToken(Base):
    """An FCM registration token of one app installation."""

    __tablename__ = "push_tokens"

    token: Mapped[str] = mapped_column(String(512), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    platform: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class Delivery(Base):
    """One push to one device token: pending → sent, or retried and finally parked."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("message_id", "token", name="uq_deliveries_message_token"),
        Index("ix_deliveries_due", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    message_id: Mapped[int] = mapped_column(BigIntPK)
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    token: Mapped[str] = mapped_column(String(512))
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    critical: Mapped[bool] = mapped_column(Boolean)
    status: Mapped[str] = mapped_column(String(16))  # pending | sent | dropped | parked
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime())
    last_error: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)


class BranchProfile(Base):
    """A branch owner's description of the branch's members, from BranchPreferenceCreated."""

    __tablename__ = "branch_profiles"

    branch_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    preference_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    default_locale: Mapped[str] = mapped_column(String(5))
    topics: Mapped[list[str]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class GateDenial(Base):
    """Recent refusals at a gate, to notice a burst of them."""

    __tablename__ = "gate_denials"
    __table_args__ = (Index("ix_gate_denials_gate_at", "branch_id", "gate_id", "decided_at"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    branch_id: Mapped[str] = mapped_column(String(64))
    gate_id: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(String(64))
    decided_at: Mapped[datetime] = mapped_column(UtcDateTime())
