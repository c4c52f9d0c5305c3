"""Every event notification consumes."""

from __future__ import annotations

from common.events.bus import Subscriptions
from common.events.catalog import UserRegistered
from notification.service import welcome_new_user


def subscriptions() -> Subscriptions:
    subs = Subscriptions("notification")
    subs.add(UserRegistered, welcome_new_user, name="welcome_new_user")
    return subs
