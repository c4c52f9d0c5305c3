"""Every event access consumes: memberships and faces from auth, and every branch's
granted entries (for the chain-wide pre-fetch ranking)."""

from __future__ import annotations

import numpy as np

from access.accounts import forget_member
from access.faces import FaceCache, decayed, rank_key
from access.models import FaceVector, MembershipCopy, VisitScore
from common.crypto import VectorSealer
from common.events.bus import Subscriptions
from common.events.outbox import UnitOfWork
from contracts import AccessGranted, FaceEnrolled, FaceErased, MembershipChanged, UserDeleted


class AccessEvents:
    def __init__(self, *, faces: FaceCache, sealer: VectorSealer, half_life_days: float) -> None:
        self._faces = faces
        self._sealer = sealer
        self._half_life_days = half_life_days

    def subscriptions(self, site: str) -> Subscriptions:
        # One queue per site: each site keeps a full copy, so sites must not compete.
        subs = Subscriptions(f"access.{site}")
        subs.add(MembershipChanged, self.membership_changed, name="membership_changed")
        subs.add(FaceEnrolled, self.face_enrolled, name="face_enrolled")
        subs.add(FaceErased, self.face_erased, name="face_erased")
        subs.add(AccessGranted, self.entry_seen, name="entry_seen")
        subs.add(UserDeleted, self.user_deleted, name="forget_deleted_user")
        return subs

    async def user_deleted(self, event: UserDeleted, uow: UnitOfWork) -> None:
        await forget_member(uow.session, member_id=event.user_id)

    async def membership_changed(self, event: MembershipChanged, uow: UnitOfWork) -> None:
        row = await uow.session.get(MembershipCopy, event.membership_id, with_for_update=True)
        if row is not None and row.version >= event.version:
            return  # a late copy of an older change
        if row is None:
            row = MembershipCopy(membership_id=event.membership_id)
            uow.session.add(row)
        row.member_id, row.branch_id, row.status = event.member_id, event.branch_id, event.status
        row.valid_from, row.valid_until = event.valid_from, event.valid_until
        row.identity_required, row.identity_verified = event.identity_required, event.identity_verified
        row.access_hours, row.version = event.access_hours, event.version
        await uow.session.flush()
        await self._faces.membership_changed(uow.session, event.member_id)

    async def face_enrolled(self, event: FaceEnrolled, uow: UnitOfWork) -> None:
        vector = np.asarray(event.embedding, np.float32)
        row = await uow.session.get(FaceVector, event.member_id, with_for_update=True)
        if row is None:
            row = FaceVector(member_id=event.member_id)
            uow.session.add(row)
        row.model, row.embedding_space = event.model, event.embedding_space
        row.sealed, row.enrolled_at = self._sealer.seal(event.member_id, vector), event.occurred_at
        await uow.session.flush()
        await self._faces.enrolled(uow.session, event.member_id, vector, event.embedding_space)

    async def face_erased(self, event: FaceErased, uow: UnitOfWork) -> None:
        # The gallery first: if facemodel cannot be told, the handler fails before anything
        # commits and the event comes back; both steps are safe to repeat.
        await self._faces.erased(event.member_id)
        row = await uow.session.get(FaceVector, event.member_id, with_for_update=True)
        if row is not None:
            await uow.session.delete(row)

    async def entry_seen(self, event: AccessGranted, uow: UnitOfWork) -> None:
        if event.member_id is None or event.direction != "in":
            return
        half_life = self._half_life_days
        row = await uow.session.get(VisitScore, event.member_id, with_for_update=True)
        if row is None:
            row = VisitScore(member_id=event.member_id, visits=0, score=0.0, last_visit_at=event.decided_at)
            uow.session.add(row)
        if event.decided_at >= row.last_visit_at:
            row.score = decayed(row.score, row.last_visit_at, event.decided_at, half_life_days=half_life) + 1
            row.last_visit_at = event.decided_at
        else:  # a late event: its weight is already decayed to the last visit's time
            row.score += decayed(1.0, event.decided_at, row.last_visit_at, half_life_days=half_life)
        row.visits += 1
        row.rank_key = rank_key(row.score, row.last_visit_at, half_life_days=half_life)
