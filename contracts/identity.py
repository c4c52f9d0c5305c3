"""Accounts, memberships, devices and faces (published by auth)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import ClassVar, Literal

from pydantic import EmailStr, Field

from common.events.envelope import Event
from contracts.catalog import CATALOG

ACCESS_HOURS_PATTERN = r"^([01][0-9]|2[0-3]):[0-5][0-9]-([01][0-9]|2[0-3]):[0-5][0-9]$"


@CATALOG.register
class UserRegistered(Event):
    """A person created an account with auth."""

    event_name: ClassVar[str] = "UserRegistered"
    event_version: ClassVar[int] = 1

    user_id: uuid.UUID
    email: EmailStr | None = None  # members sign up with an email or a phone number
    phone: str | None = None
    roles: tuple[str, ...]


@CATALOG.register
class MembershipChanged(Event):
    """A membership was created or changed; ``version`` orders changes of one membership
    (consumers keep the highest they have seen, so a late redelivery cannot roll back)."""

    event_name: ClassVar[str] = "MembershipChanged"
    event_version: ClassVar[int] = 1

    membership_id: uuid.UUID
    member_id: uuid.UUID
    branch_id: str | None  # None: every branch of the chain
    status: Literal["active", "paused", "expired", "blocked"]
    valid_from: datetime
    valid_until: datetime
    identity_required: bool
    identity_verified: bool
    version: int = Field(ge=1)
    # Daily window the member may enter, "HH:MM-HH:MM" in the branch's local time (may wrap
    # past midnight); None: any time. Optional, so v1 consumers that ignore it stay valid.
    access_hours: str | None = Field(default=None, pattern=ACCESS_HOURS_PATTERN)


@CATALOG.register
class DeviceRevoked(Event):
    """A device's credentials were revoked (its tokens end through the kernel's
    TokensRevoked, which auth publishes with it)."""

    event_name: ClassVar[str] = "DeviceRevoked"
    event_version: ClassVar[int] = 1

    device_id: uuid.UUID
    branch_id: str


@CATALOG.register
class PasswordResetRequested(Event):
    """Somebody asked to reset a password; notification delivers the one-time token.
    Superseded by version 2 (phone-only accounts); kept to read messages still in flight."""

    event_name: ClassVar[str] = "PasswordResetRequested"
    event_version: ClassVar[int] = 1

    user_id: uuid.UUID
    email: EmailStr
    reset_token: str = Field(min_length=20, max_length=200)
    expires_at: datetime


@CATALOG.register
class FaceEnrolled(Event):
    """A member enrolled (or re-enrolled) their face with consent; the vector replaces any
    earlier one. Biometric data: consumers keep it only as long as the member's consent.

    The vector travels sealed (AES-GCM, common.crypto, purpose ``FACE_TRANSIT_PURPOSE``)
    under the biometric sealing key ``key_id`` that only auth and access hold: the broker,
    its queues and parking lots and every other consumer see ciphertext.
    ``enrolment_version`` orders enrolments of one member, across erasures: an enrolment
    not newer than an erasure the consumer has seen is a late or replayed copy."""

    event_name: ClassVar[str] = "FaceEnrolled"
    event_version: ClassVar[int] = 2
    purge_after_publish: ClassVar[bool] = True

    member_id: uuid.UUID
    sealed_embedding: str = Field(min_length=16, max_length=24_000, description="base64 of the sealed vector")
    key_id: str = Field(pattern=r"^[A-Za-z0-9._-]{1,32}$")
    enrolment_version: int = Field(ge=1)
    model: str
    embedding_space: str


@CATALOG.register
class FaceErased(Event):
    """A member's face vector was destroyed: every copy must go within seconds."""

    event_name: ClassVar[str] = "FaceErased"
    event_version: ClassVar[int] = 1

    member_id: uuid.UUID
    reason: Literal["consent_withdrawn", "member_request", "account_deleted"]
    # The newest enrolment erased (absent from older publishers: then everything enrolled
    # before ``occurred_at`` is).
    enrolment_version: int | None = Field(default=None, ge=0)


# The sealing purpose of FaceEnrolled's vector (fixed forever, like every purpose).
FACE_TRANSIT_PURPOSE = b"smartgym-face-transit-v1"


@CATALOG.register
class UserDeleted(Event):
    """A person deleted their account with auth: every service forgets what it keeps about
    them (auth itself has already removed the account and erased the face vector)."""

    event_name: ClassVar[str] = "UserDeleted"
    event_version: ClassVar[int] = 1

    user_id: uuid.UUID


@CATALOG.register
class PasswordResetRequestedV2(Event):
    """Somebody asked to reset a password; notification delivers the one-time code once
    (push for an account with an email, SMS to ``phone`` for a phone-only one) and keeps
    no copy after sending. Auth itself stores only the code's hash."""

    event_name: ClassVar[str] = "PasswordResetRequested"
    event_version: ClassVar[int] = 2

    user_id: uuid.UUID
    email: EmailStr | None = None
    phone: str | None = Field(default=None, pattern=r"^\+[1-9][0-9]{7,14}$")
    reset_token: str = Field(min_length=20, max_length=200)
    expires_at: datetime
