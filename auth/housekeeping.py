"""auth's periodic clean-up: what must not outlive its use."""

from __future__ import annotations

from sqlalchemy import delete

from common.kernel import ServiceKernel
from contracts import PasswordResetRequested, PasswordResetRequestedV2

RESET_ROUTING_KEYS = (PasswordResetRequested.routing_key(), PasswordResetRequestedV2.routing_key())


async def forget_sent_reset_codes(kernel: ServiceKernel) -> int:
    """Delete reset events from auth's outbox once published. The outbox keeps published
    events for days (for inspection); a reset code must not stay in clear that long -
    auth itself keeps only its hash, and notification drops it once delivered."""
    if kernel.tables is None:
        return 0
    outbox = kernel.tables.outbox
    async with kernel.db.transaction() as session:
        result = await session.execute(
            delete(outbox).where(outbox.c.published_at.is_not(None), outbox.c.routing_key.in_(RESET_ROUTING_KEYS))
        )
    return int(getattr(result, "rowcount", 0) or 0)
