"""Every event branch_owner consumes, and who handles it."""

from __future__ import annotations

from branch_owner import queue
from branch_owner.preferences import Preferences
from common.events.bus import Subscriptions
from contracts import AccessGranted, TaskJudgedV2


def subscriptions(preferences: Preferences) -> Subscriptions:
    subs = Subscriptions("branch_owner")
    subs.add(TaskJudgedV2, queue.task_judged, name="review_queue")
    subs.add(AccessGranted, preferences.access_granted, name="branch_entries")
    return subs
