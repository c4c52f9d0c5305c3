"""helper's settings: the photo store, upload limits, and the task judge's thresholds."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import Field, SecretStr, model_validator

from common.settings import PlatformSettings


class HelperSettings(PlatformSettings):
    # "directory" keeps photos under data_dir (embedded mode); "s3" in production.
    helper_photo_store: Literal["directory", "s3"] = "directory"
    helper_photo_dir: Path | None = None  # default: <data_dir>/helper-photos
    helper_s3_endpoint: str | None = None  # None: AWS itself
    helper_s3_bucket: str = Field(default="smartgym-task-photos", min_length=3, max_length=63)
    helper_s3_region: str = "ap-northeast-2"
    helper_s3_access_key_id: SecretStr | None = None
    helper_s3_secret_access_key: SecretStr | None = None
    helper_photo_max_bytes: int = Field(default=4 * 1024 * 1024, ge=1024, le=20 * 1024 * 1024)
    # The whole upload: five photos at the limit plus the form around them.
    max_body_bytes: int = Field(default=21 * 1024 * 1024, ge=1024)
    # Decoding is refused beyond this many pixels (a small file can decode to gigabytes).
    helper_photo_max_pixels: int = Field(default=40_000_000, ge=10_000)
    # Days are counted in the branches' local time for daily limits.
    helper_timezone: str = "Asia/Seoul"
    # The judge's measured checks (see helper/checks.py for what each number means).
    judge_duplicate_max_distance: int = Field(default=6, ge=0, le=32)
    judge_duplicate_window_days: int = Field(default=30, ge=1, le=365)
    judge_blur_min_variance: float = Field(default=60.0, ge=0)
    judge_dark_min_brightness: float = Field(default=45.0, ge=0, le=255)
    judge_max_photo_age_s: float = Field(default=6 * 3600, gt=0)
    # The learned classifier's pack (see helper/classifier.py); none: "needs review".
    judge_model_pack: Path | None = None
    # Where operators' packs are mounted: POST /v1/judge/model swaps in one of them by name.
    judge_packs_dir: Path | None = None
    judge_pass_threshold: float = Field(default=0.9, gt=0.5, le=1)

    @model_validator(mode="after")
    def _store_configured(self) -> Self:
        # Replicas on several nodes must share the photos; one box keeps them on its disk.
        if self.environment == "production" and self.helper_photo_store != "s3" and not self.single_box:
            raise ValueError("production keeps task photos in S3: set SMARTGYM_HELPER_PHOTO_STORE=s3")
        return self

    @property
    def photo_dir(self) -> Path:
        return self.helper_photo_dir or self.data_dir / "helper-photos"
