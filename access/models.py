"""access's own tables: what it needs to decide at the door with nobody else reachable."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Float, Index, Integer, LargeBinary, String, Uuid
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from common.db import BigIntPK, UtcDateTime, service_metadata


class Base(DeclarativeBase):
    metadata = service_metadata()


class MembershipCopy(Base):
    """auth's memberships as last announced (highest ``version`` wins)."""

    __tablename__ = "memberships"

    membership_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    member_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    branch_id: Mapped[str | None] = mapped_column(String(64), nullable=True)  # None: every branch
    status: Mapped[str] = mapped_column(String(20))
    valid_from: Mapped[datetime] = mapped_column(UtcDateTime())
    valid_until: Mapped[datetime] = mapped_column(UtcDateTime())
    identity_required: Mapped[bool] = mapped_column(Boolean)
    identity_verified: Mapped[bool] = mapped_column(Boolean)
    access_hours: Mapped[str | None] = mapped_column(String(11), nullable=True)
    version: Mapped[int] = mapped_column(Integer)


class FaceVector(Base):
    """A member's enrolled face vector, sealed (AES-GCM, member id as associated data)."""

    __tablename__ = "face_vectors"

    member_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    model: Mapped[str] = mapped_column(String(100))
    embedding_space: Mapped[str] = mapped_column(String(100))
    sealed: Mapped[bytes] = mapped_column(LargeBinary)
    enrolled_at: Mapped[datetime] = mapped_column(UtcDateTime())
    version: Mapped[int] = mapped_column(BigInteger, server_default="0")  # FaceEnrolled.enrolment_version


class FaceTombstone(Base):
    """A member's face was erased: enrolments up to ``version`` are refused (late or
    replayed copies), and until ``galleries_cleared`` facemodel may still hold the vector,
    so a match on it is not trusted and the reconciler keeps removing it."""

    __tablename__ = "face_tombstones"

    member_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger)
    erased_at: Mapped[datetime] = mapped_column(UtcDateTime())
    galleries_cleared: Mapped[bool] = mapped_column(Boolean, index=True)


class VisitScore(Base):
    """How recently and often a member visits any branch, for the pre-fetch ranking.

    ``rank_key`` = ln(decayed visit count) + last_visit / tau: ordering by it equals
    ordering by the decayed count *now*, whatever now is, so the ranking is one indexed
    ORDER BY with no rewrite of old rows as time passes.
    """

    __tablename__ = "visit_scores"

    member_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    visits: Mapped[int] = mapped_column(Integer)
    score: Mapped[float] = mapped_column(Float)  # decayed count as of last_visit_at
    last_visit_at: Mapped[datetime] = mapped_column(UtcDateTime())
    rank_key: Mapped[float] = mapped_column(Float, index=True)


class Presence(Base):
    """Whether a member is inside a branch (anti-passback and occupancy)."""

    __tablename__ = "presence"

    member_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    branch_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    inside: Mapped[bool] = mapped_column(Boolean)
    changed_at: Mapped[datetime] = mapped_column(UtcDateTime())
    gate_id: Mapped[str] = mapped_column(String(64))


class UsedEntryPass(Base):
    """Entry passes already used: the primary key makes a replay lose the race."""

    __tablename__ = "used_entry_passes"

    token_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)


class AccessAttempt(Base):
    """Every attempt at every gate, granted or not."""

    __tablename__ = "access_log"
    __table_args__ = (Index("ix_access_log_branch_id_id", "branch_id", "id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    attempt_id: Mapped[uuid.UUID] = mapped_column(Uuid, unique=True)
    decided_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    branch_id: Mapped[str] = mapped_column(String(64))
    gate_id: Mapped[str] = mapped_column(String(64))
    direction: Mapped[str] = mapped_column(String(3))
    method: Mapped[str] = mapped_column(String(10))
    member_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True, index=True)
    outcome: Mapped[str] = mapped_column(String(10))  # granted | denied
    reason: Mapped[str] = mapped_column(String(64))
    similarity: Mapped[float | None] = mapped_column(Float, nullable=True)
    model: Mapped[str | None] = mapped_column(String(100), nullable=True)
    latency_ms: Mapped[float] = mapped_column(Float)
    gate_result: Mapped[str] = mapped_column(String(32))
    offline: Mapped[bool] = mapped_column(Boolean)


class AuditEntry(Base):
    """Operator actions at the door (passback overrides, remote opens); append-only."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(64))
    branch_id: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str | None] = mapped_column(String(100), nullable=True)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)


class GateRequest(Base):
    """A gate request made with an Idempotency-Key, and the decision it got: a kiosk that
    retries after a timeout gets this decision back instead of a second attempt."""

    __tablename__ = "gate_requests"

    gate_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    caller: Mapped[str] = mapped_column(String(100), primary_key=True)  # the kiosk or operator
    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    attempt_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    decision: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
