"""Memberships: who may enter which branch, when. Every change is published for access."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date, datetime
from typing import Literal

from sqlalchemy import select

from auth.audit import audit
from auth.errors import UnknownUser
from auth.identity import IdentityCheck, IdentityVerdict
from auth.models import Membership, User
from common.events.envelope import utc_now
from common.kernel import ServiceKernel
from contracts import MembershipChanged

REPUBLISH_BATCH = 500
MembershipStatus = Literal["active", "paused", "expired", "blocked"]


class InvalidMembership(ValueError):
    pass


class MembershipService:
    def __init__(self, *, kernel: ServiceKernel, identity: IdentityCheck) -> None:
        self._kernel = kernel
        self._identity = identity

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
        access_hours: str | None = None,
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
            membership.access_hours = access_hours
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
            uow.emit(membership_changed(membership, identity_verified=member.identity_verified_at is not None))
        return membership

    async def verify_identity(
        self, *, member_id: uuid.UUID, card_token: str, holder_name: str, birth_date: date, source: str | None
    ) -> IdentityVerdict:
        """Ask the card partner who this is; on success the member is verified and every
        membership is republished, so access learns memberships that required it are valid."""
        verdict = await self._identity.verify(card_token=card_token, holder_name=holder_name, birth_date=birth_date)
        async with self._kernel.unit_of_work() as uow:
            member = await uow.session.get(User, member_id, with_for_update=True)
            if member is None:
                raise UnknownUser
            audit(
                uow.session,
                "identity_checked",
                actor=str(member_id),
                subject=str(member_id),
                source=source,
                verified=verdict.verified,
                reason=verdict.reason,
                reference=str(verdict.reference),
            )
            if verdict.verified and member.identity_verified_at is None:
                member.identity_verified_at, member.identity_reference = utc_now(), verdict.reference
                memberships = (
                    await uow.session.scalars(select(Membership).where(Membership.member_id == member_id))
                ).all()
                for membership in memberships:
                    membership.version += 1
                    membership.updated_at = utc_now()
                    uow.emit(membership_changed(membership, identity_verified=True))
        return verdict

    async def republish(self, *, actor: str, source: str | None) -> int:
        """Announce every membership again, as it stands (same versions): a new access
        site fills its copy from this; sites that have them ignore equal versions."""
        published = 0
        async with self._kernel.db.sessions() as session:
            rows = (
                await session.execute(
                    select(Membership, User.identity_verified_at).join(User, User.id == Membership.member_id)
                )
            ).all()
        for start in range(0, len(rows), REPUBLISH_BATCH):
            async with self._kernel.unit_of_work() as uow:
                for membership, verified_at in rows[start : start + REPUBLISH_BATCH]:
                    uow.emit(membership_changed(membership, identity_verified=verified_at is not None))
                    published += 1
        async with self._kernel.unit_of_work() as uow:
            audit(uow.session, "memberships_republished", actor=actor, subject=None, source=source, count=published)
        return published

    async def of_member(self, member_id: uuid.UUID) -> Sequence[Membership]:
        async with self._kernel.db.sessions() as session:
            return (await session.scalars(select(Membership).where(Membership.member_id == member_id))).all()


def membership_changed(membership: Membership, *, identity_verified: bool) -> MembershipChanged:
    return MembershipChanged(
        membership_id=membership.id,
        member_id=membership.member_id,
        branch_id=membership.branch_id,
        status=membership.status,
        valid_from=membership.valid_from,
        valid_until=membership.valid_until,
        identity_required=membership.requires_identity,
        identity_verified=identity_verified,
        version=membership.version,
        access_hours=membership.access_hours,
    )


def _same_branch(branch_id: str | None):  # type: ignore[no-untyped-def]
    return Membership.branch_id.is_(None) if branch_id is None else Membership.branch_id == branch_id
