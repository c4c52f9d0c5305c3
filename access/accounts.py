"""What access forgets when a member deletes their account (no web framework here)."""

from __future__ import annotations

import uuid

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from access.models import Presence, VisitScore


async def forget_member(session: AsyncSession, *, member_id: uuid.UUID) -> None:
    """Where the member is (presence, for anti-passback and occupancy) and how often they
    came (pre-fetch ranking). Memberships end and the face vector goes through their own
    events; the access log stays, as the audit trail of the doors. Safe to repeat."""
    await session.execute(delete(Presence).where(Presence.member_id == member_id))
    await session.execute(delete(VisitScore).where(VisitScore.member_id == member_id))
