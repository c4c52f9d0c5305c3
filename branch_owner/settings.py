"""branch_owner's settings: the review SLA and how preference tags are derived."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import Field, SecretStr, model_validator

from common.settings import PlatformSettings


class BranchOwnerSettings(PlatformSettings):
    review_sla_s: float = Field(
        default=4 * 3600,
        gt=0,
        description="Seconds a judged task may wait for the owner before TaskReviewOverdue (raised once).",
    )
    review_sla_check_interval_s: float = Field(
        default=60.0, gt=0, le=3600, description="How often overdue tasks are looked for."
    )
    branch_timezone: str = Field(
        default="Asia/Seoul", description="Branches' local time, for the hours of entries behind usage tags."
    )
    preference_usage_share: float = Field(
        default=0.3, gt=0, le=1, description="Share of entries in a time band that makes it a usage tag."
    )
    preference_min_mentions: int = Field(
        default=2, ge=1, le=1000, description="Reviews that must mention a facility for it to become a tag."
    )
    branch_photo_store: Literal["directory", "s3"] = Field(
        default="directory", description="Where branch photos are kept: a directory (embedded mode) or S3."
    )
    branch_photo_dir: Path | None = Field(
        default=None, description="The branch photo directory; unset: `branch-photos` under the data directory."
    )
    branch_photo_s3_endpoint: str | None = Field(
        default=None, description="S3 endpoint URL for S3-compatible stores; unset: AWS itself."
    )
    branch_photo_s3_bucket: str = Field(
        default="smartgym-branch-photos", min_length=3, max_length=63, description="Bucket of the branch photos."
    )
    branch_photo_s3_region: str = Field(default="ap-northeast-2", description="Region of the branch photo bucket.")
    branch_photo_s3_access_key_id: SecretStr | None = Field(
        default=None, description="S3 access key id; unset: the pod's role or the default credential chain."
    )
    branch_photo_s3_secret_access_key: SecretStr | None = Field(
        default=None, description="S3 secret access key of the branch photo bucket."
    )
    branch_photo_max_bytes: int = Field(
        default=3 * 1024 * 1024,
        ge=1024,
        le=4 * 1024 * 1024,
        description="Largest branch photo accepted, in bytes (the console shrinks photos before sending).",
    )
    branch_photo_max_pixels: int = Field(
        default=40_000_000, ge=10_000, description="Largest branch photo accepted, in pixels (decoded size)."
    )
    max_body_bytes: int = Field(
        default=4 * 1024 * 1024, ge=1024, description="Largest request body: one branch photo at the limit."
    )

    @model_validator(mode="after")
    def _store_configured(self) -> Self:
        # Replicas on several nodes must share the photos; one box keeps them on its disk.
        if self.environment == "production" and self.branch_photo_store != "s3" and not self.single_box:
            raise ValueError("production keeps branch photos in S3: set SMARTGYM_BRANCH_PHOTO_STORE=s3")
        return self

    @property
    def photo_dir(self) -> Path:
        return self.branch_photo_dir or self.data_dir / "branch-photos"
