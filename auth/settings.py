"""auth's settings beyond the platform's."""

from __future__ import annotations

from pydantic import Field, SecretStr

from common.settings import PlatformSettings


class AuthSettings(PlatformSettings):
    # The card identity-check partner. Unset in embedded mode: the launcher then starts
    # the local partner simulator (auth.cardcheck_sim) and points here.
    cardcheck_url: str = Field(
        default="http://127.0.0.1:8011",
        description=(
            "The card identity-check partner's base URL; unset in `smartgym up` starts the local "
            "simulator on the port plan."
        ),
    )
    cardcheck_api_key: SecretStr = Field(
        default=SecretStr("local-cardcheck-key"), description="API key presented to the card identity-check partner."
    )
    cardcheck_timeout_s: float = Field(default=5.0, gt=0, le=30, description="Timeout of one identity check, seconds.")
    # facemodel's TCP API, for enrolment (auth forwards the member's own token).
    facemodel_url: str = Field(
        default="http://127.0.0.1:8003",
        description="facemodel's TCP API, for enrolment photos (auth forwards the member's own token).",
    )
    # The consent text members accept before enrolment; a new text needs new consent.
    face_consent_version: str = Field(
        default="2026-11",
        pattern=r"^[A-Za-z0-9._-]{1,32}$",
        description=(
            "Version of the consent text members accept before face enrolment; a new version needs new consent."
        ),
    )
    max_face_upload_bytes: int = Field(default=5 * 1024 * 1024, ge=1024, description="Largest enrolment photo.")
    # Enrolment photos are the largest bodies auth takes.
    max_body_bytes: int = Field(
        default=5 * 1024 * 1024 + 4096,
        ge=1024,
        description="Largest request body (enrolment photos are the largest auth takes).",
    )
