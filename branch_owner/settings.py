"""branch_owner's settings: the review SLA and how preference tags are derived."""

from __future__ import annotations

from pydantic import Field

from common.settings import PlatformSettings


class BranchOwnerSettings(PlatformSettings):
    # A judged task waiting longer than this for the owner raises TaskReviewOverdue (once).
    review_sla_s: float = Field(default=4 * 3600, gt=0)
    review_sla_check_interval_s: float = Field(default=60.0, gt=0, le=3600)
    # Branches' local time, for the hours of entries behind usage tags.
    branch_timezone: str = "Asia/Seoul"
    # A usage band becomes a tag when at least this share of entries falls in it.
    preference_usage_share: float = Field(default=0.3, gt=0, le=1)
    # A review keyword becomes a tag when this many reviews mention it.
    preference_min_mentions: int = Field(default=2, ge=1, le=1000)
