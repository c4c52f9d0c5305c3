"""auth's HTTP input and output shapes (inputs refuse unknown fields)."""

from __future__ import annotations

import re
import uuid
from datetime import date, datetime
from typing import Any, Literal, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, EmailStr, Field, field_validator, model_validator

from common.security import Role
from contracts import ACCESS_HOURS_PATTERN


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


PHONE_PATTERN = r"^\+[1-9][0-9]{7,14}$"  # E.164
# Numbers written the national way (a leading trunk 0) are Korean: the market we serve.
NATIONAL_COUNTRY_CODE = "82"
_PHONE_SEPARATORS = str.maketrans("", "", " -.()\u00a0")


def e164(phone: str) -> str:
    """A phone number as people write it, in E.164: separators dropped, a national
    ``010-1234-5678`` becomes ``+821012345678``, and the trunk 0 that many keep after the
    country code (``+82 010…``) goes. Anything else is returned as it is, for the pattern
    to refuse."""
    compact = phone.strip().translate(_PHONE_SEPARATORS)
    prefix = f"+{NATIONAL_COUNTRY_CODE}0"
    if compact.startswith(prefix):
        return f"+{NATIONAL_COUNTRY_CODE}{compact[len(prefix) :]}"
    if compact.startswith("0") and not compact.startswith("00"):
        return f"+{NATIONAL_COUNTRY_CODE}{compact[1:]}"
    return compact


class Identified(Input):
    """An email or a phone number, exactly one; the phone is kept in E.164, so one number
    written two ways is one account."""

    email: EmailStr | None = Field(default=None, max_length=254)
    phone: str | None = Field(
        default=None,
        max_length=32,
        pattern=PHONE_PATTERN,
        examples=["+821012345678", "010-1234-5678"],
        description="E.164, or a Korean number as written (010-1234-5678)",
    )

    @field_validator("phone", mode="before")
    @classmethod
    def _to_e164(cls, value: object) -> object:
        if isinstance(value, str) and len(value) <= 32:
            normalised = e164(value)
            if not re.fullmatch(PHONE_PATTERN, normalised):
                raise ValueError("phone must be a number like 010-1234-5678 or +82 10 1234 5678")
            return normalised
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        if (self.email is None) == (self.phone is None):
            raise ValueError("give either an email or a phone number")
        return self


class SignupIn(Identified):
    # Length and strength are checked by the service, which explains what is wrong.
    password: str = Field(min_length=1, max_length=128)


class LoginIn(Identified):
    password: str = Field(min_length=1, max_length=128)


class AccountDeletionIn(Input):
    password: str = Field(min_length=1, max_length=128)


class ConsentIn(Input):
    text_version: str = Field(min_length=1, max_length=32)
    accepted: Literal[True]


class ConsentOut(BaseModel):
    id: uuid.UUID
    text_version: str
    given_at: datetime


class FaceEnrolledOut(BaseModel):
    model: str
    embedding_space: str


class FaceStatusOut(BaseModel):
    consent_version: str = Field(description="the consent text version a member must accept before enrolling")
    consent_given_at: datetime | None
    enrolled_at: datetime | None


class RefreshIn(Input):
    refresh_token: str = Field(min_length=20, max_length=200)


class PasswordChangeIn(Input):
    current_password: str = Field(min_length=1, max_length=128)
    new_password: str = Field(min_length=1, max_length=128)


class RolesIn(Input):
    roles: list[Role] = Field(min_length=1, max_length=5)
    branches: list[str] = Field(default_factory=list, max_length=200)

    @model_validator(mode="after")
    def _no_service_role(self) -> Self:
        if Role.SERVICE in self.roles:
            raise ValueError("the service role belongs to services, not to accounts")
        return self


class UserPublic(BaseModel):
    id: uuid.UUID
    email: str | None
    phone: str | None = None
    roles: list[str]
    branches: list[str] = []
    identity_verified_at: datetime | None = None


class TokenOut(BaseModel):
    access_token: str
    token_type: str = "bearer"  # noqa: S105 - the OAuth2 token type, not a secret
    expires_in: int
    refresh_token: str
    refresh_expires_in: int


class EntryPassIn(Input):
    branch_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")


class EntryPassOut(BaseModel):
    code: str  # shown as a QR code; one use, at the named branch only
    expires_in: int


class RepublishIn(Input):
    what: Literal["memberships", "faces"]


class RepublishOut(BaseModel):
    published: int


class KeyRotated(BaseModel):
    kid: str


class RevocationOut(BaseModel):
    """One revocation in force; the fields of the kernel's TokensRevoked event."""

    subject: str | None
    session_id: str | None
    issued_before: datetime
    expires_at: datetime


class AuditEntryPublic(BaseModel):
    id: int
    at: datetime
    action: str
    actor: str | None
    subject: str | None
    source_address: str | None
    details: dict[str, Any]


class ResetRequestIn(Identified):
    """A phone-only account gets its code by SMS, an email account by its app's push."""


class ResetIn(Input):
    reset_token: str = Field(min_length=20, max_length=200)
    new_password: str = Field(min_length=1, max_length=128)


class DeviceIn(Input):
    name: str = Field(min_length=1, max_length=100)
    kind: Literal["gate", "kiosk", "camera", "equipment"]
    branch_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")


class DeviceCredentialsOut(BaseModel):
    client_id: uuid.UUID
    client_secret: str


class DevicePublic(BaseModel):
    """A device account as its branch's staff see it: never its secret."""

    id: uuid.UUID
    name: str
    kind: str
    branch_id: str
    created_at: datetime
    rotated_at: datetime | None
    revoked_at: datetime | None


class DeviceTokenIn(Input):
    client_id: uuid.UUID
    client_secret: str = Field(min_length=20, max_length=200)


class DeviceTokenOut(BaseModel):
    access_token: str
    token_type: str = "bearer"  # noqa: S105 - the OAuth2 token type, not a secret
    expires_in: int


class MembershipIn(Input):
    branch_id: str | None = Field(default=None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    status: Literal["active", "paused", "expired", "blocked"]
    valid_from: AwareDatetime
    valid_until: AwareDatetime
    requires_identity: bool = False
    access_hours: str | None = Field(default=None, pattern=ACCESS_HOURS_PATTERN, examples=["06:00-23:00"])


class MembershipPublic(BaseModel):
    id: uuid.UUID
    member_id: uuid.UUID
    branch_id: str | None
    status: str
    valid_from: datetime
    valid_until: datetime
    requires_identity: bool
    access_hours: str | None
    version: int


class IdentityCheckIn(Input):
    card_token: str = Field(min_length=4, max_length=100, pattern=r"^[A-Za-z0-9_-]+$")
    holder_name: str = Field(min_length=1, max_length=100)
    birth_date: date


class IdentityCheckOut(BaseModel):
    verified: bool
    reason: str | None
