"""helper's settings: the photo store, upload limits, and the task judge's thresholds."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import Field, SecretStr, model_validator

from common.modelsync import ModelInstanceSettings


class HelperSettings(ModelInstanceSettings):
    helper_photo_store: Literal["directory", "s3"] = Field(
        default="directory", description="Where task photos are kept: a directory (embedded mode) or S3 (production)."
    )
    helper_photo_dir: Path | None = Field(
        default=None, description="The photo directory; unset: `helper-photos` under the data directory."
    )
    helper_s3_endpoint: str | None = Field(
        default=None, description="S3 endpoint URL for S3-compatible stores; unset: AWS itself."
    )
    helper_s3_bucket: str = Field(
        default="smartgym-task-photos", min_length=3, max_length=63, description="Bucket of the task photos."
    )
    helper_s3_region: str = Field(default="ap-northeast-2", description="Region of the bucket.")
    helper_s3_access_key_id: SecretStr | None = Field(
        default=None, description="S3 access key id; unset: the pod's role or the default credential chain."
    )
    helper_s3_secret_access_key: SecretStr | None = Field(default=None, description="S3 secret access key.")
    helper_photo_max_bytes: int = Field(
        default=4 * 1024 * 1024, ge=1024, le=20 * 1024 * 1024, description="Largest photo accepted, in bytes."
    )
    max_body_bytes: int = Field(
        default=21 * 1024 * 1024,
        ge=1024,
        description="Largest request body: five photos at the limit plus the form around them.",
    )
    helper_photo_max_pixels: int = Field(
        default=40_000_000,
        ge=10_000,
        description="Largest photo accepted, in pixels (a small file can decode to gigabytes).",
    )
    helper_timezone: str = Field(
        default="Asia/Seoul", description="Time zone whose days the daily limits count, and of EXIF times without one."
    )
    judge_duplicate_max_distance: int = Field(
        default=6,
        ge=0,
        le=32,
        description="Perceptual-hash distance (of 64 bits) at or below which photos are the same.",
    )
    judge_duplicate_window_days: int = Field(
        default=30, ge=1, le=365, description="How far back a branch's photos are compared for re-submissions."
    )
    judge_blur_min_variance: float = Field(
        default=60.0, ge=0, description="Variance of the Laplacian (at 512 px) below which a photo is blurred."
    )
    judge_dark_min_brightness: float = Field(
        default=45.0, ge=0, le=255, description="Mean grey level (0-255) below which a photo is too dark."
    )
    judge_max_photo_age_s: float = Field(
        default=6 * 3600, gt=0, description="Oldest EXIF capture time accepted, in seconds before the submission."
    )
    judge_model_pack: Path | None = Field(
        default=None, description="The task classifier's pack loaded at start; unset: every verdict needs review."
    )
    judge_packs_dir: Path | None = Field(
        default=None, description="Where operators' packs are mounted, for `POST /v1/judge/model` to swap in by name."
    )
    judge_pass_threshold: float = Field(
        default=0.9, gt=0.5, le=1, description="Classifier probability for `pass` (and 1 minus it for `fail`)."
    )

    @model_validator(mode="after")
    def _store_configured(self) -> Self:
        # Replicas on several nodes must share the photos; one box keeps them on its disk.
        if self.environment == "production" and self.helper_photo_store != "s3" and not self.single_box:
            raise ValueError("production keeps task photos in S3: set SMARTGYM_HELPER_PHOTO_STORE=s3")
        return self

    @property
    def photo_dir(self) -> Path:
        return self.helper_photo_dir or self.data_dir / "helper-photos"
