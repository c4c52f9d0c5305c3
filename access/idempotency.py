"""Idempotency keys on gate requests (face entry, QR entry, remote open).

A kiosk that times out waiting for a decision retries; without a key the retry is a
second attempt, and anti-passback refuses it ("already inside") although the first one
opened the door. With a key, the first decision is stored with it in the decision's own
transaction and handed back to every retry. Keys are scoped per gate and caller (kiosk
or operator), and expire after ``access_idempotency_ttl_s``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from access.models import GateRequest

KEY_PATTERN = r"^[A-Za-z0-9._:-]{8,100}$"


class KeyReused(Exception):
    """The key was used before for a different request at this gate."""


@dataclass(frozen=True)
class RequestKey:
    gate_id: str
    caller: str
    key: str
    fingerprint: str

    @classmethod
    def of(cls, *, gate_id: str, caller: str, key: str, method: str, payload: bytes) -> RequestKey:
        digest = hashlib.sha256(method.encode() + b"\0" + payload).hexdigest()
        return cls(gate_id, caller[:100], key, digest)

    @property
    def scope(self) -> tuple[str, str, str]:
        return self.gate_id, self.caller, self.key


async def stored_decision(session: AsyncSession, *, request: RequestKey, since: datetime) -> dict[str, Any] | None:
    """The decision stored under the key, if it is fresh (an expired use of the key is
    removed); KeyReused if the key came with another request."""
    row = await session.get(GateRequest, request.scope)
    if row is None:
        return None
    if row.created_at < since:
        await session.delete(row)
        return None
    if row.fingerprint != request.fingerprint:
        raise KeyReused(request.key)
    return row.decision


def remember(
    session: AsyncSession, *, request: RequestKey, attempt_id: Any, decision: dict[str, Any], now: datetime
) -> None:
    """Store the decision under the key, in the decision's transaction."""
    session.add(
        GateRequest(
            gate_id=request.gate_id,
            caller=request.caller,
            key=request.key,
            fingerprint=request.fingerprint,
            attempt_id=attempt_id,
            decision=decision,
            created_at=now,
        )
    )


async def forget_before(session: AsyncSession, *, before: datetime) -> None:
    await session.execute(delete(GateRequest).where(GateRequest.created_at < before))
