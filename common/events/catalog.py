"""The events SmartGym services publish to each other (the published language).

Services cannot import each other, so the contract lives here, in the kernel. Each class
is one version of one event; see :mod:`common.events.envelope` for the rules.
"""

from __future__ import annotations

import uuid
from typing import ClassVar

from pydantic import EmailStr

from common.events.envelope import Event, EventCatalog

CATALOG = EventCatalog()


@CATALOG.register
class UserRegistered(Event):
    """A person created an account with auth."""

    event_name: ClassVar[str] = "UserRegistered"
    event_version: ClassVar[int] = 1

    user_id: uuid.UUID
    email: EmailStr
    roles: tuple[str, ...]
