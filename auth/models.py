"""auth's own tables."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Integer, LargeBinary, String, Uuid
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from common.db import BigIntPK, UtcDateTime, service_metadata


class Base(DeclarativeBase):
    metadata = service_metadata()


class User(Base):
    __tablename__ = "users"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    email: Mapped[str | None] = mapped_column(String(254), unique=True, nullable=True)
    phone: Mapped[str | None] = mapped_column(String(20), unique=True, nullable=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    roles: Mapped[list[str]] = mapped_column(JSON)
    # Branches a branch owner runs or a helper works at; operators act chain-wide.
    branches: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    password_changed_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    # Set when the card identity-check partner confirmed who this is.
    identity_verified_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    identity_reference: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)


class SigningKeyRecord(Base):
    """An RSA signing key; the private half is stored encrypted with the key secret.

    The newest active key signs. A key replaced by rotation stays published in the JWKS
    until ``retire_at`` (the last token it signed has expired by then).
    """

    __tablename__ = "signing_keys"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    private_key_pem: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    retire_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)


class RefreshToken(Base):
    """One refresh token of a login session (a family). Only its SHA-256 is stored.

    Each use rotates it: the old one is marked used and a new one joins the family.
    Presenting a used or revoked token means it was stolen or replayed, and the whole
    family is revoked.
    """

    __tablename__ = "refresh_tokens"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    family_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    issued_at: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)


class LoginThrottle(Base):
    """Failed logins per normalised email *and* source address, whether or not the account
    exists (so the lockout itself reveals nothing). Keyed by both, so a stranger who
    guesses wrong locks out only their own address, never the member."""

    __tablename__ = "login_throttle"

    email: Mapped[str] = mapped_column(String(254), primary_key=True)
    source: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    window_started_at: Mapped[datetime] = mapped_column(UtcDateTime())
    locked_until: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)


class AuditEntry(Base):
    """Append-only record of a security-relevant action (never updated or deleted)."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    action: Mapped[str] = mapped_column(String(64), index=True)
    actor: Mapped[str | None] = mapped_column(String(254), nullable=True)
    subject: Mapped[str | None] = mapped_column(String(254), nullable=True, index=True)
    source_address: Mapped[str | None] = mapped_column(String(64), nullable=True)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class Device(Base):
    """A gate, kiosk, camera or machine that calls SmartGym with client credentials.

    The secret is 32 random bytes shown once; only its SHA-256 is kept (a high-entropy
    secret needs no slow hash).
    """

    __tablename__ = "devices"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(20))
    branch_id: Mapped[str] = mapped_column(String(64), index=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    rotated_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)


class Membership(Base):
    """A member's right to enter one branch (or every branch when ``branch_id`` is null)."""

    __tablename__ = "memberships"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    member_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    branch_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    status: Mapped[str] = mapped_column(String(20))
    valid_from: Mapped[datetime] = mapped_column(UtcDateTime())
    valid_until: Mapped[datetime] = mapped_column(UtcDateTime())
    requires_identity: Mapped[bool] = mapped_column(Boolean, default=False)
    access_hours: Mapped[str | None] = mapped_column(String(11), nullable=True)
    # Bumped on every change; consumers keep the highest version they have seen.
    version: Mapped[int] = mapped_column(Integer, default=1)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class PasswordReset(Base):
    __tablename__ = "password_resets"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    # When it was asked for: the per-account throttle counts recent requests.
    requested_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())
    # Used, or superseded by a newer code: either way it opens nothing any more.
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)


class FaceConsent(Base):
    """A member's explicit consent to face entry, with the text version they accepted."""

    __tablename__ = "face_consents"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    text_version: Mapped[str] = mapped_column(String(32))
    given_at: Mapped[datetime] = mapped_column(UtcDateTime())
    withdrawn_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    source_address: Mapped[str | None] = mapped_column(String(64), nullable=True)


class FaceEnrollment(Base):
    """A member's face vector, encrypted at rest (AES-GCM). The photo is never stored."""

    __tablename__ = "face_enrollments"

    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    model: Mapped[str] = mapped_column(String(100))
    embedding_space: Mapped[str] = mapped_column(String(100))
    sealed_embedding: Mapped[bytes] = mapped_column(LargeBinary)
    enrolled_at: Mapped[datetime] = mapped_column(UtcDateTime())
    # Orders this member's enrolments, across erasures (FaceEnrolled.enrolment_version).
    version: Mapped[int] = mapped_column(BigInteger, server_default="0")


class Revocation(Base):
    """Access tokens refused before they expire (see common.events.revocations): kept
    until every token it could match has expired, so a replica that starts late can
    read what is in force."""

    __tablename__ = "revocations"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    subject: Mapped[str | None] = mapped_column(String(254), nullable=True)
    session_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    issued_before: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
