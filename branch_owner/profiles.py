"""Branch profiles: written by the branch's owner (or an operator), published in full."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from branch_owner.models import Branch, BranchPhoto
from common.db import Database
from common.events.envelope import utc_now
from common.events.outbox import UnitOfWork
from common.kernel import ServiceKernel
from contracts import BranchInfoCreated, BranchInfoUpdated, OpeningHours, Price


@dataclass(frozen=True)
class ProfileIn:
    name: str
    address: str
    lat: float
    lon: float
    hours: list[dict[str, str]]  # empty: open around the clock
    facilities: list[str]
    equipment: dict[str, int]
    prices: list[dict[str, Any]]
    photo_urls: list[str]


FIELDS = ("name", "address", "lat", "lon", "hours", "facilities", "equipment", "prices", "photo_urls")
# What a profile shows at most: links and uploaded photos together (the event's bound).
MAX_PHOTOS = 20
# Where readers fetch an uploaded photo: this service's route behind the gateway.
PHOTO_PATH = "/api/branch-owner/v1/branches/{branch_id}/photos/{photo_id}"


class TooManyPhotos(Exception):
    pass


async def photos_of(session: AsyncSession, branch_id: str) -> list[BranchPhoto]:
    rows = await session.scalars(
        select(BranchPhoto).where(BranchPhoto.branch_id == branch_id).order_by(BranchPhoto.uploaded_at)
    )
    return list(rows)


async def publish(uow: UnitOfWork, row: Branch, *, created: bool, by: uuid.UUID) -> None:
    """Bump the revision and publish the whole profile: the links the owner typed, then the
    uploaded photos' paths."""
    with uow.session.no_autoflush:  # a new profile is flushed complete, below
        uploaded = await photos_of(uow.session, row.branch_id)
    if len(row.photo_urls) + len(uploaded) > MAX_PHOTOS:
        raise TooManyPhotos
    row.open_24h = not row.hours
    row.revision += 1
    row.updated_by = by
    row.updated_at = utc_now()
    kind = BranchInfoCreated if created else BranchInfoUpdated
    urls = [*row.photo_urls, *(PHOTO_PATH.format(branch_id=row.branch_id, photo_id=p.id) for p in uploaded)]
    uow.emit(
        kind(
            branch_id=row.branch_id,
            name=row.name,
            address=row.address,
            lat=row.lat,
            lon=row.lon,
            open_24h=row.open_24h,
            hours=tuple(OpeningHours.model_validate(item) for item in row.hours),
            facilities=tuple(row.facilities),
            equipment=dict(row.equipment),
            prices=tuple(Price.model_validate(item) for item in row.prices),
            photo_urls=tuple(urls),
            revision=row.revision,
            updated_at=row.updated_at,
        )
    )


async def put_profile(
    kernel: ServiceKernel, *, branch_id: str, profile: ProfileIn, by: uuid.UUID
) -> tuple[Branch, bool]:
    """Create or replace the profile; (row, created). Nothing is published when nothing
    changed, so a client repeating a save does not make readers re-index."""
    async with kernel.unit_of_work() as uow:
        row = await uow.session.get(Branch, branch_id, with_for_update=True)
        created = row is None
        if row is None:
            row = Branch(branch_id=branch_id, revision=0)
            uow.session.add(row)
        elif all(getattr(row, name) == getattr(profile, name) for name in FIELDS):
            return row, False
        for name in FIELDS:
            setattr(row, name, getattr(profile, name))
        await publish(uow, row, created=created, by=by)
    return row, created


async def profile_of(database: Database, *, branch_id: str) -> Branch | None:
    async with database.sessions() as session:
        return await session.get(Branch, branch_id)


async def profiles_of(database: Database, *, branch_ids: Sequence[str] | None) -> Sequence[Branch]:
    query = select(Branch).order_by(Branch.branch_id).limit(500)
    if branch_ids is not None:
        query = query.where(Branch.branch_id.in_(branch_ids))
    async with database.sessions() as session:
        return (await session.scalars(query)).all()
