"""auth's settings beyond the platform's."""

from __future__ import annotations

from pydantic import Field, SecretStr

from common.settings import PlatformSettings


class AuthSettings(PlatformSettings):
    # The card identity-check partner. Unset in embedded mode: the launcher then starts
    # the local partner simulator (auth.cardcheck_sim) and points here.
    cardcheck_url: str = "http://127.0.0.1:8011"
    cardcheck_api_key: SecretStr = SecretStr("local-cardcheck-key")
    cardcheck_timeout_s: float = Field(default=5.0, gt=0, le=30)
    # facemodel's TCP API, for enrolment (auth forwards the member's own token).
    facemodel_url: str = "http://127.0.0.1:8003"
    # The consent text members accept before enrolment; a new text needs new consent.
    face_consent_version: str = Field(default="2026-11", pattern=r"^[A-Za-z0-9._-]{1,32}$")
    max_face_upload_bytes: int = Field(default=5 * 1024 * 1024, ge=1024)
    # Enrolment photos are the largest bodies auth takes.
    max_body_bytes: int = Field(default=5 * 1024 * 1024 + 4096, ge=1024)
