"""Key rotation for sealed biometric values stored in a service's own table."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import InstrumentedAttribute

from common.crypto import VectorSealer
from common.db import Database


async def reseal_rows(
    database: Database,
    table: type[Any],
    owner: InstrumentedAttribute[uuid.UUID],
    sealed: InstrumentedAttribute[bytes],
    sealer: VectorSealer,
    *,
    batch: int = 500,
) -> tuple[int, int]:
    """Re-seal, under the current key, every value of ``table`` sealed under another one
    (the owner's id is the associated data and the key to page by). One transaction per
    batch, rows locked: a value re-written meanwhile (a re-enrolment) is simply re-read.
    Returns (re-sealed, seen)."""
    resealed = seen = 0
    after: uuid.UUID | None = None
    while True:
        async with database.transaction() as session:
            statement = select(owner, sealed).order_by(owner).limit(batch).with_for_update()
            if after is not None:
                statement = statement.where(owner > after)
            rows = (await session.execute(statement)).all()
            if not rows:
                return resealed, seen
            for member_id, value in rows:
                seen += 1
                if sealer.is_current(value):
                    continue
                await session.execute(
                    update(table).where(owner == member_id).values({sealed.key: sealer.reseal(member_id, value)})
                )
                resealed += 1
            after = rows[-1][0]
