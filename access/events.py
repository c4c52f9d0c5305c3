"""Every event access consumes: memberships and faces from auth, and every branch's
granted entries (for the chain-wide pre-fetch ranking)."""

from __future__ import annotations

import base64
import binascii
import logging

from access.accounts import forget_member
from access.face_store import decayed, rank_key, version_at
from access.faces import FaceCache
from access.models import FaceTombstone, FaceVector, MembershipCopy, VisitScore
from common.crypto import InvalidTag, VectorSealer
from common.events.bus import Subscriptions
from common.events.outbox import UnitOfWork
from contracts import AccessGranted, FaceEnrolled, FaceErased, MembershipChanged, UserDeleted

log = logging.getLogger(__name__)


class UnreadableEnrolment(Exception):
    """A FaceEnrolled whose sealed vector this site cannot open."""


class AccessEvents:
    def __init__(self, *, faces: FaceCache, sealer: VectorSealer, transit: VectorSealer, half_life_days: float) -> None:
        self._faces = faces
        self._sealer = sealer
        self._transit = transit
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
        member_id, version = event.member_id, event.enrolment_version
        tombstone = await uow.session.get(FaceTombstone, member_id, with_for_update=True)
        if tombstone is not None and version <= tombstone.version:
            log.info("enrolment %d of %s predates its erasure; ignored", version, member_id)
            return
        row = await uow.session.get(FaceVector, member_id, with_for_update=True)
        if row is not None and row.version >= version:
            return  # a late copy of an older (or the same) enrolment
        try:
            vector = self._transit.open(member_id, base64.b64decode(event.sealed_embedding, validate=True))
        except (InvalidTag, ValueError, binascii.Error) as exc:
            # Most likely a key this site does not hold yet (auth rotated first): the event
            # fails, is retried and parked — sealed, so safe to keep — for a replay once the
            # site has the key. Never logged with its payload.
            raise UnreadableEnrolment(f"sealed vector of {member_id} does not open with key {event.key_id}") from exc
        if row is None:
            row = FaceVector(member_id=member_id)
            uow.session.add(row)
        row.model, row.embedding_space, row.version = event.model, event.embedding_space, version
        row.sealed, row.enrolled_at = self._sealer.seal(member_id, vector), event.occurred_at
        if tombstone is not None:
            # A new enrolment after the erasure: from now on the row's version refuses the
            # older copies, and the upsert below replaces any erased vector facemodel kept.
            await uow.session.delete(tombstone)
        await uow.session.flush()
        await self._faces.enrolled(uow.session, member_id, vector, event.embedding_space)

    async def face_erased(self, event: FaceErased, uow: UnitOfWork) -> None:
        # Erased here first, durably: the vector row goes and a tombstone stays in this
        # transaction, whether facemodel is reachable or not. facemodel is told after the
        # commit and, if it is away, by the reconciler when it is back; until then a match
        # on the erased vector is not trusted (FaceCache.identify).
        erased = max(event.enrolment_version or 0, version_at(event.occurred_at))
        row = await uow.session.get(FaceVector, event.member_id, with_for_update=True)
        if row is not None:
            erased = max(erased, row.version)
            await uow.session.delete(row)
        tombstone = await uow.session.get(FaceTombstone, event.member_id, with_for_update=True)
        if tombstone is None:
            uow.session.add(
                FaceTombstone(
                    member_id=event.member_id, version=erased, erased_at=event.occurred_at, galleries_cleared=False
                )
            )
        else:
            tombstone.version, tombstone.galleries_cleared = max(tombstone.version, erased), False
        self._faces.erasing(event.member_id)
        uow.after_commit(lambda: self._faces.forget_soon(event.member_id))

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
