"""Ending access tokens early: logout, password or role change, device revoked, account
deleted. Each records a revocation in auth's table and publishes it (same transaction)
as the kernel's TokensRevoked, which every replica's verifier applies."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import delete, select

from auth.models import Revocation
from common.db import Database
from common.events.envelope import utc_now
from common.events.outbox import UnitOfWork
from common.events.revocations import TokensRevoked

# Beyond the longest token lifetime: the verifiers' clock leeway plus skew between hosts.
MARGIN = timedelta(minutes=1)


def revoke(
    uow: UnitOfWork, *, token_ttl: timedelta, subject: str | None = None, session_id: str | None = None
) -> TokensRevoked:
    """Refuse ``subject``'s tokens issued until now, or every token of ``session_id``."""
    now = utc_now()
    expires_at = now + token_ttl + MARGIN
    event = TokensRevoked(subject=subject, session_id=session_id, issued_before=now, expires_at=expires_at)
    uow.session.add(Revocation(subject=subject, session_id=session_id, issued_before=now, expires_at=expires_at))
    uow.emit(event)
    return event


async def in_force(database: Database) -> Sequence[TokensRevoked]:
    now = utc_now()
    async with database.sessions() as session:
        rows = (await session.scalars(select(Revocation).where(Revocation.expires_at > now))).all()
    return [
        TokensRevoked(
            subject=row.subject, session_id=row.session_id, issued_before=row.issued_before, expires_at=row.expires_at
        )
        for row in rows
    ]


async def purge_expired(database: Database) -> int:
    async with database.transaction() as session:
        result = await session.execute(delete(Revocation).where(Revocation.expires_at <= utc_now()))
    return int(getattr(result, "rowcount", 0) or 0)
