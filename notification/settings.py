"""notification's settings: where FCM is, who we are to it, how hard we retry."""

from __future__ import annotations

from pathlib import Path
from typing import Self

from pydantic import Field, model_validator

from common.settings import PlatformSettings


class NotificationSettings(PlatformSettings):
    fcm_project_id: str = Field(default="smartgym-local", min_length=1, max_length=100)
    fcm_endpoint: str = "http://127.0.0.1:8012"  # https://fcm.googleapis.com in production
    fcm_token_uri: str = "http://127.0.0.1:8012/token"  # noqa: S105 - a URL; https://oauth2.googleapis.com/token
    # The service account's JSON key (mounted from a Secret). Without one, local and test
    # runs sign with a throwaway key that only the local FCM stand-in accepts.
    fcm_service_account_file: Path | None = None
    fcm_timeout_s: float = Field(default=10.0, gt=0, le=60)
    notification_send_concurrency: int = Field(default=64, ge=1, le=1000)
    notification_max_attempts: int = Field(default=6, ge=1, le=50)
    notification_retry_base_s: float = Field(default=1.0, gt=0, le=600)
    notification_retry_cap_s: float = Field(default=600.0, gt=0)
    notification_poll_interval_s: float = Field(default=0.2, gt=0, le=10)
    # Repeated refusals at one gate within the window are worth a branch owner's attention.
    notification_denials_threshold: int = Field(default=5, ge=2, le=1000)
    notification_denials_window_s: float = Field(default=120.0, gt=0, le=86_400)

    @model_validator(mode="after")
    def _real_account_in_production(self) -> Self:
        if self.environment == "production" and self.fcm_service_account_file is None:
            raise ValueError("production needs SMARTGYM_FCM_SERVICE_ACCOUNT_FILE (the FCM service account key)")
        return self
