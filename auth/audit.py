"""The append-only audit trail of security-relevant actions."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from auth.models import AuditEntry
from common.events.envelope import utc_now


def audit(
    session: AsyncSession,
    action: str,
    *,
    actor: str | None,
    subject: str | None,
    source: str | None,
    **details: Any,
) -> None:
    session.add(
        AuditEntry(at=utc_now(), action=action, actor=actor, subject=subject, source_address=source, details=details)
    )
