"""branch_owner's settings: the review SLA and how preference tags are derived."""

from __future__ import annotations

from pydantic import Field

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
