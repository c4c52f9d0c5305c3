"""Who may enter: membership rules, as pure functions of what access has stored.

The reason codes here are what the kiosk shows and what the access log keeps; they are a
contract with the kiosk app, so they change only by adding.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, time
from enum import StrEnum
from zoneinfo import ZoneInfo


class Reason(StrEnum):
    GRANTED = "granted"
    # membership
    NO_MEMBERSHIP = "no_membership"
    MEMBERSHIP_BLOCKED = "membership_blocked"
    MEMBERSHIP_PAUSED = "membership_paused"
    MEMBERSHIP_EXPIRED = "membership_expired"
    MEMBERSHIP_NOT_STARTED = "membership_not_started"
    IDENTITY_UNVERIFIED = "identity_unverified"
    OUTSIDE_ACCESS_HOURS = "outside_access_hours"
    # the branch and the door
    ALREADY_INSIDE = "already_inside"
    BRANCH_FULL = "branch_full"
    GATE_OFFLINE = "gate_offline"
    GATE_FAILED = "gate_failed"
    # face
    NO_FACE = "no_face"
    POOR_QUALITY = "poor_quality"
    MATCH_BELOW_THRESHOLD = "match_below_threshold"
    FACE_NOT_RECOGNISED = "face_not_recognised"
    LIVENESS_FAILED = "liveness_failed"  # a still photo, or no burst where the branch asks for one
    # entry pass (QR)
    PASS_EXPIRED = "pass_expired"  # noqa: S105 - a reason code, not a secret
    PASS_REPLAYED = "pass_replayed"  # noqa: S105 - a reason code, not a secret
    PASS_INVALID = "pass_invalid"  # noqa: S105 - a reason code, not a secret
    PASS_WRONG_BRANCH = "pass_wrong_branch"  # noqa: S105 - a reason code, not a secret


@dataclass(frozen=True)
class MembershipTerms:
    branch_id: str | None
    status: str
    valid_from: datetime
    valid_until: datetime
    identity_required: bool
    identity_verified: bool
    access_hours: str | None


def membership_verdict(
    memberships: Iterable[MembershipTerms], *, branch_id: str, now: datetime, timezone: str
) -> Reason:
    """GRANTED if any membership covering ``branch_id`` lets the member in now; otherwise
    the most useful reason to show. A block anywhere that covers the branch wins."""
    covering = [terms for terms in memberships if terms.branch_id in (None, branch_id)]
    if not covering:
        return Reason.NO_MEMBERSHIP
    if any(terms.status == "blocked" for terms in covering):
        return Reason.MEMBERSHIP_BLOCKED
    local = now.astimezone(ZoneInfo(timezone)).time()
    reasons = [_single_verdict(terms, now, local) for terms in covering]
    if Reason.GRANTED in reasons:
        return Reason.GRANTED
    return min(reasons, key=_PRIORITY.index)


# When nothing grants, the reason closest to "granted" is the one worth telling the member.
_PRIORITY = [
    Reason.OUTSIDE_ACCESS_HOURS,
    Reason.IDENTITY_UNVERIFIED,
    Reason.MEMBERSHIP_NOT_STARTED,
    Reason.MEMBERSHIP_PAUSED,
    Reason.MEMBERSHIP_EXPIRED,
]


def _single_verdict(terms: MembershipTerms, now: datetime, local: time) -> Reason:
    if terms.status == "paused":
        return Reason.MEMBERSHIP_PAUSED
    if terms.status == "expired" or now >= terms.valid_until:
        return Reason.MEMBERSHIP_EXPIRED
    if now < terms.valid_from:
        return Reason.MEMBERSHIP_NOT_STARTED
    if terms.identity_required and not terms.identity_verified:
        return Reason.IDENTITY_UNVERIFIED
    if terms.access_hours is not None and not within_hours(terms.access_hours, local):
        return Reason.OUTSIDE_ACCESS_HOURS
    return Reason.GRANTED


def within_hours(window: str, local: time) -> bool:
    """``"HH:MM-HH:MM"``; a window whose end is before its start wraps past midnight, and
    equal ends mean the whole day."""
    start_text, end_text = window.split("-")
    start, end = time.fromisoformat(start_text), time.fromisoformat(end_text)
    if start == end:
        return True
    if start < end:
        return start <= local < end
    return local >= start or local < end
