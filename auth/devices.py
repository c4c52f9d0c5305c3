"""Device accounts: client credentials for gates, kiosks, cameras and machines."""

from __future__ import annotations

import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from sqlalchemy import select

from auth.audit import audit
from auth.keys import KeyRing
from auth.models import Device
from auth.revocations import revoke
from common.events.envelope import utc_now
from common.kernel import ServiceKernel
from common.security import Role, TokenIssuer, secret_digest
from contracts import DeviceRevoked

DeviceKind = Literal["gate", "kiosk", "camera", "equipment"]

# Device tokens live shorter than members': a revoked device is locked out by its next
# token request at the latest, and every verifier refuses its tokens at once (TokensRevoked).
DEVICE_TOKEN_TTL = timedelta(minutes=5)


class UnknownDevice(Exception):
    pass


class DeviceRejected(Exception):
    """Wrong secret, unknown or revoked device: one answer for all three."""


class NotYourBranch(Exception):
    """The device belongs to a branch the caller does not manage."""


def _check_scope(device: Device, allowed_branches: frozenset[str] | None) -> None:
    # ``None`` is chain-wide (an operator); an owner's set comes from their token, whose
    # branch claims are revoked the moment an operator changes them.
    if allowed_branches is not None and device.branch_id not in allowed_branches:
        raise NotYourBranch


@dataclass(frozen=True)
class DeviceCredentials:
    device_id: uuid.UUID
    client_secret: str


class DeviceService:
    def __init__(self, *, kernel: ServiceKernel, keys: KeyRing) -> None:
        self._kernel = kernel
        self._keys = keys

    async def register(
        self, *, actor: str, name: str, kind: DeviceKind, branch_id: str, source: str | None
    ) -> DeviceCredentials:
        secret = secrets.token_urlsafe(32)
        device = Device(
            id=uuid.uuid4(),
            name=name,
            kind=kind,
            branch_id=branch_id,
            secret_hash=secret_digest(secret),
            created_at=utc_now(),
        )
        async with self._kernel.unit_of_work() as uow:
            uow.session.add(device)
            audit(
                uow.session,
                "device_registered",
                actor=actor,
                subject=str(device.id),
                source=source,
                kind=kind,
                branch_id=branch_id,
            )
        return DeviceCredentials(device.id, secret)

    async def of_branch(self, *, branch_id: str, include_revoked: bool) -> list[Device]:
        """The branch's devices, newest first (a branch has a handful: no paging)."""
        query = select(Device).where(Device.branch_id == branch_id)
        if not include_revoked:
            query = query.where(Device.revoked_at.is_(None))
        async with self._kernel.db.sessions() as session:
            return list(await session.scalars(query.order_by(Device.created_at.desc()).limit(500)))

    async def find(self, *, name: str, branch_id: str) -> Device | None:
        """The active device of that name at that branch, if any."""
        async with self._kernel.db.sessions() as session:
            return await session.scalar(
                select(Device).where(Device.name == name, Device.branch_id == branch_id, Device.revoked_at.is_(None))
            )

    async def rotate(
        self,
        *,
        actor: str,
        device_id: uuid.UUID,
        source: str | None,
        allowed_branches: frozenset[str] | None = None,
    ) -> DeviceCredentials:
        secret = secrets.token_urlsafe(32)
        async with self._kernel.unit_of_work() as uow:
            device = await uow.session.get(Device, device_id, with_for_update=True)
            if device is None or device.revoked_at is not None:
                raise UnknownDevice
            _check_scope(device, allowed_branches)
            device.secret_hash, device.rotated_at = secret_digest(secret), utc_now()
            audit(uow.session, "device_secret_rotated", actor=actor, subject=str(device_id), source=source)
        return DeviceCredentials(device_id, secret)

    async def revoke(
        self,
        *,
        actor: str,
        device_id: uuid.UUID,
        source: str | None,
        allowed_branches: frozenset[str] | None = None,
    ) -> None:
        async with self._kernel.unit_of_work() as uow:
            device = await uow.session.get(Device, device_id, with_for_update=True)
            if device is None:
                raise UnknownDevice
            _check_scope(device, allowed_branches)
            if device.revoked_at is not None:
                return
            device.revoked_at = utc_now()
            audit(uow.session, "device_revoked", actor=actor, subject=str(device_id), source=source)
            uow.emit(DeviceRevoked(device_id=device_id, branch_id=device.branch_id))
            revoke(uow, token_ttl=DEVICE_TOKEN_TTL, subject=f"device:{device_id}")

    async def issue_token(self, *, device_id: uuid.UUID, client_secret: str) -> tuple[str, int]:
        async with self._kernel.db.sessions() as session:
            device = await session.get(Device, device_id)
        presented = secret_digest(client_secret)
        expected = device.secret_hash if device is not None else secret_digest(secrets.token_urlsafe(32))
        if not hmac.compare_digest(presented, expected) or device is None or device.revoked_at is not None:
            raise DeviceRejected
        settings = self._kernel.settings
        issuer = TokenIssuer(
            self._keys.active, issuer=settings.jwt_issuer, audience=settings.jwt_audience, ttl=DEVICE_TOKEN_TTL
        )
        token = issuer.issue(f"device:{device.id}", [Role.DEVICE], [device.branch_id])
        return token, int(DEVICE_TOKEN_TTL.total_seconds())
