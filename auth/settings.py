"""auth's settings beyond the platform's."""

from __future__ import annotations

from typing import Self

from pydantic import Field, SecretStr, model_validator

from common.sealing import BiometricSealingSettings
from common.settings import LOCAL_KEY_SECRET, weak_secret


class AuthSettings(BiometricSealingSettings):
    # Keys written under SMARTGYM_KEY_ENCRYPTION_SECRET before the split are re-encrypted
    # under this one at start (auth.keys).
    signing_key_secret: SecretStr = Field(
        default=SecretStr(LOCAL_KEY_SECRET),
        description=(
            "Encrypts auth's JWT signing keys at rest; auth's alone. Production wants 32+ unpredictable "
            "characters, different from SMARTGYM_KEY_ENCRYPTION_SECRET."
        ),
    )
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
    # facemodel's TCP API, for enrolment (auth calls it with its own service credential).
    facemodel_url: str = Field(
        default="http://127.0.0.1:8003",
        description="facemodel's TCP API, for enrolment photos (auth calls it with its own service credential).",
    )
    # The consent text members accept before enrolment; a new text needs new consent.
    face_consent_version: str = Field(
        default="2026-11",
        pattern=r"^[A-Za-z0-9._-]{1,32}$",
        description=(
            "Version of the consent text members accept before face enrolment; a new version needs new consent."
        ),
    )
    auth_hash_threads: int = Field(
        default=0,
        ge=0,
        le=64,
        description=(
            "Threads that hash passwords (Argon2id, 19 MiB each while it runs and kept by its thread "
            "afterwards); 0: one per CPU this process may use (affinity and cgroup quota). Logins beyond "
            "them queue."
        ),
    )
    max_face_upload_bytes: int = Field(default=5 * 1024 * 1024, ge=1024, description="Largest enrolment photo.")
    # Enrolment photos are the largest bodies auth takes.
    max_body_bytes: int = Field(
        default=5 * 1024 * 1024 + 4096,
        ge=1024,
        description="Largest request body (enrolment photos are the largest auth takes).",
    )

    @model_validator(mode="after")
    def _strong_secrets_in_production(self) -> Self:
        if self.environment != "production":
            return self
        # The key-encryption secret only opens values sealed before the per-purpose keys
        # (signing keys, face vectors) existed: it is no longer a secret auth depends on.
        problems: list[str] = []
        for variable, value, min_length, min_bits in (
            ("SMARTGYM_SIGNING_KEY_SECRET", self.signing_key_secret.get_secret_value(), 32, 128.0),
            # Issued by the partner: its format is theirs, but never a short or sample key.
            ("SMARTGYM_CARDCHECK_API_KEY", self.cardcheck_api_key.get_secret_value(), 24, 80.0),
        ):
            reason = weak_secret(variable, value, min_length=min_length, min_bits=min_bits)
            if reason:
                problems.append(reason)
        if self.signing_key_secret.get_secret_value() == self.key_encryption_secret.get_secret_value():
            problems.append("SMARTGYM_SIGNING_KEY_SECRET must differ from SMARTGYM_KEY_ENCRYPTION_SECRET")
        if problems:
            raise ValueError("unsafe production settings: " + "; ".join(problems))
        return self
