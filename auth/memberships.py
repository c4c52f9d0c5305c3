"""Memberships: who may enter which branch, when. Every change is published for access."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Literal

from sqlalchemy import select

from auth.models import Membership, User
from auth.service import UnknownUser, audit
from common.events.catalog import MembershipChanged
from common.events.envelope import utc_now
from common.kernel import ServiceKernel

MembershipStatus = Literal["active", "paused", "expired", "blocked"]


class InvalidMembership(ValueError):
    pass


class MembershipService:
    def __init__(self, *, kernel: ServiceKernel) -> None:
        self._kernel = kernel

    async def set_membership(
        self,
        *,
        actor: str,
        member_id: uuid.UUID,
        branch_id: str | None,
        status: MembershipStatus,
        valid_from: datetime,
        valid_until: datetime,
        requires_identity: bool,
        source: str | None,
    ) -> Membership:
        """Create or replace the member's membership for ``branch_id`` (None: chain-wide)."""
        if valid_until <= valid_from:
            raise InvalidMembership("valid_until must be after valid_from")
        async with self._kernel.unit_of_work() as uow:
            member = await uow.session.get(User, member_id)
            if member is None:
                raise UnknownUser
            membership = await uow.session.scalar(
                select(Membership).where(Membership.member_id == member_id, _same_branch(branch_id)).with_for_update()
            )
            now = utc_now()
            if membership is None:
                membership = Membership(id=uuid.uuid4(), member_id=member_id, branch_id=branch_id, version=0)
                uow.session.add(membership)
            membership.status, membership.valid_from, membership.valid_until = status, valid_from, valid_until
            membership.requires_identity = requires_identity
            membership.version += 1
            membership.updated_at = now
            audit(
                uow.session,
                "membership_changed",
                actor=actor,
                subject=str(member_id),
                source=source,
                branch_id=branch_id,
                status=status,
                version=membership.version,
            )
            uow.emit(
                MembershipChanged(
                    membership_id=membership.id,
                    member_id=member_id,
                    branch_id=branch_id,
                    status=status,
                    valid_from=valid_from,
                    valid_until=valid_until,
                    identity_required=requires_identity,
                    identity_verified=False,
                    version=membership.version,
                )
            )
        return membership

    async def of_member(self, member_id: uuid.UUID) -> Sequence[Membership]:
        async with self._kernel.db.sessions() as session:
            return (await session.scalars(select(Membership).where(Membership.member_id == member_id))).all()


def _same_branch(branch_id: str | None):  # type: ignore[no-untyped-def]
    return Membership.branch_id.is_(None) if branch_id is None else Membership.branch_id == branch_id
