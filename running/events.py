"""Every event running consumes, and who handles it."""

from __future__ import annotations

from common.events.bus import Subscriptions
from contracts import UserDeleted
from running.accounts import user_deleted


def subscriptions() -> Subscriptions:
    subs = Subscriptions("running")
    subs.add(UserDeleted, user_deleted, name="forget_deleted_user")
    return subs
