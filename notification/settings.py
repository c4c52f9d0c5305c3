"""notification's settings: where FCM is, who we are to it, how hard we retry."""

from __future__ import annotations

from pathlib import Path
from typing import Self

from pydantic import Field, SecretStr, model_validator

from common.settings import PlatformSettings, weak_secret


class NotificationSettings(PlatformSettings):
    fcm_project_id: str = Field(
        default="smartgym-local", min_length=1, max_length=100, description="Firebase project the pushes are sent for."
    )
    fcm_endpoint: str = Field(
        default="http://127.0.0.1:8012",
        description=(
            "FCM HTTP v1 base URL (https://fcm.googleapis.com in production; the local stand-in in `smartgym up`)."
        ),
    )
    fcm_token_uri: str = Field(
        default="http://127.0.0.1:8012/token",
        description=(
            "OAuth2 token endpoint for the service account (https://oauth2.googleapis.com/token in production)."
        ),
    )
    # The service account's JSON key (mounted from a Secret). Without one, local and test
    # runs sign with a throwaway key that only the local FCM stand-in accepts.
    fcm_service_account_file: Path | None = Field(
        default=None,
        description=(
            "The FCM service account's JSON key (mounted from a Secret); required in production. Unset: a"
            " throwaway key only the local stand-in accepts."
        ),
    )
    fcm_timeout_s: float = Field(default=10.0, gt=0, le=60, description="Timeout of one FCM call, seconds.")
    notification_send_concurrency: int = Field(default=64, ge=1, le=1000, description="Pushes in flight at once.")
    notification_max_attempts: int = Field(
        default=6, ge=1, le=50, description="Attempts of one push before it is given up."
    )
    notification_retry_base_s: float = Field(
        default=1.0, gt=0, le=600, description="First retry delay of a push, seconds (doubles each attempt)."
    )
    notification_retry_cap_s: float = Field(default=600.0, gt=0, description="Longest retry delay of a push, seconds.")
    notification_poll_interval_s: float = Field(
        default=0.2, gt=0, le=10, description="Seconds between polls of the push queue."
    )
    # Repeated refusals at one gate within the window are worth a branch owner's attention.
    notification_denials_threshold: int = Field(
        default=5, ge=2, le=1000, description="Refusals at one gate within the window that alert the branch owner."
    )
    notification_denials_window_s: float = Field(
        default=120.0, gt=0, le=86_400, description="The window for counting refusals at a gate, seconds."
    )
    # The SMS partner (Twilio's Messages API, or one that speaks it), for members who
    # signed up with a phone number only.
    sms_endpoint: str = Field(
        default="http://127.0.0.1:8013",
        description="The SMS partner's base URL (https://api.twilio.com); embedded mode: the local stand-in.",
    )
    sms_account_sid: str = Field(
        default="AC" + "0" * 32, pattern=r"^AC[0-9a-fA-F]{32}$", description="The SMS partner account's SID."
    )
    sms_auth_token: SecretStr = Field(
        default=SecretStr("local-sms-auth-token"),
        description="The SMS partner account's auth token; production refuses a placeholder.",
    )
    sms_from: str = Field(
        default="+15005550006", pattern=r"^\+[1-9][0-9]{7,14}$", description="The number texts come from (E.164)."
    )
    sms_timeout_s: float = Field(default=10.0, gt=0, le=60, description="Timeout of one SMS send, seconds.")

    @model_validator(mode="after")
    def _real_account_in_production(self) -> Self:
        if self.environment != "production":
            return self
        problems = []
        if self.fcm_service_account_file is None:
            problems.append("production needs SMARTGYM_FCM_SERVICE_ACCOUNT_FILE (the FCM service account key)")
        # A Twilio auth token is 32 hex digits: long enough, and no placeholder.
        reason = weak_secret("SMARTGYM_SMS_AUTH_TOKEN", self.sms_auth_token.get_secret_value(), min_bits=80.0)
        if reason:
            problems.append(reason)
        if not self.sms_endpoint.startswith("https://"):
            problems.append("SMARTGYM_SMS_ENDPOINT must be https:// in production")
        if problems:
            raise ValueError("unsafe production settings: " + "; ".join(problems))
        return self
