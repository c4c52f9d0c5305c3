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
