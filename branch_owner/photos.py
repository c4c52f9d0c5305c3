"""Photos of a branch, uploaded from the owner's console: checked, re-encoded, kept in the
branch photo store, and published with the profile (their paths in ``photo_urls``).

The bytes go to the store before the row is written: a failed transaction leaves an
orphan object nobody links to, never a row without its photo. A delete removes the row
(and republishes the profile) first and the object after the commit, for the same reason.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from branch_owner.models import Branch, BranchPhoto
from branch_owner.profiles import TooManyPhotos, photos_of, publish
from branch_owner.settings import BranchOwnerSettings
from common.db import Database
from common.events.envelope import utc_now
from common.images import ImageRefused, decode, encode, storable
from common.kernel import ServiceKernel
from common.objectstore import ObjectNotFound, ObjectStore, S3Location, object_store

KEY_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}/[0-9a-f-]{36}\.jpg$")
# Large enough for a sharp picture on a member's tablet, small enough to serve to many.
LONGEST_SIDE = 2048
FORMATS = ("JPEG", "PNG", "WEBP")
MIN_SIDE = 64

# The kernel's refusal (``reason`` says why, ``status`` is the HTTP answer).
PhotoRefused = ImageRefused


class NoSuchBranch(Exception):
    pass


@dataclass(frozen=True)
class CleanPhoto:
    data: bytes
    width: int
    height: int
    sha256: str


def clean(data: bytes, *, max_bytes: int, max_pixels: int) -> CleanPhoto:
    """Check one upload (format by content, size, pixels, that it decodes) and re-encode
    it as JPEG without metadata, at most LONGEST_SIDE on its longest side."""
    decoded = decode(data, formats=FORMATS, max_bytes=max_bytes, max_pixels=max_pixels, min_side=MIN_SIDE)
    image = storable(decoded.image, kind="JPEG")
    image.thumbnail((LONGEST_SIDE, LONGEST_SIDE))
    encoded = encode(image, kind="JPEG", quality=85, optimize=True)
    return CleanPhoto(encoded, image.width, image.height, hashlib.sha256(encoded).hexdigest())


def photo_store(settings: BranchOwnerSettings) -> ObjectStore:
    location = S3Location.from_settings(
        bucket=settings.branch_photo_s3_bucket,
        region=settings.branch_photo_s3_region,
        endpoint=settings.branch_photo_s3_endpoint,
        access_key_id=settings.branch_photo_s3_access_key_id,
        secret_access_key=settings.branch_photo_s3_secret_access_key,
    )
    return object_store(settings.branch_photo_store, directory=settings.photo_dir, s3=location, key_pattern=KEY_PATTERN)


async def add(
    kernel: ServiceKernel, *, store: ObjectStore, branch_id: str, photo: CleanPhoto, by: uuid.UUID
) -> BranchPhoto:
    """Keep the photo and republish the profile with it. The branch's profile must exist
    (a photo belongs to something members can find)."""
    async with kernel.db.sessions() as session:
        if await session.get(Branch, branch_id) is None:
            raise NoSuchBranch
    photo_id = uuid.uuid4()
    key = f"{branch_id}/{photo_id}.jpg"
    await store.put(key, photo.data, "image/jpeg")
    async with kernel.unit_of_work() as uow:
        branch = await uow.session.get(Branch, branch_id, with_for_update=True)
        if branch is None:
            raise NoSuchBranch
        row = BranchPhoto(
            id=photo_id,
            branch_id=branch_id,
            key=key,
            content_type="image/jpeg",
            size_bytes=len(photo.data),
            width=photo.width,
            height=photo.height,
            sha256=photo.sha256,
            uploaded_by=by,
            uploaded_at=utc_now(),
        )
        uow.session.add(row)
        await uow.session.flush()
        await publish(uow, branch, created=False, by=by)  # TooManyPhotos rolls it back
    return row


async def remove(
    kernel: ServiceKernel, *, store: ObjectStore, branch_id: str, photo_id: uuid.UUID, by: uuid.UUID
) -> bool:
    """Drop the photo from the profile (republished), then from the store; False if the
    branch has no such photo."""
    async with kernel.unit_of_work() as uow:
        branch = await uow.session.get(Branch, branch_id, with_for_update=True)
        row = await uow.session.get(BranchPhoto, photo_id)
        if branch is None or row is None or row.branch_id != branch_id:
            return False
        key = row.key
        await uow.session.delete(row)
        await uow.session.flush()
        await publish(uow, branch, created=False, by=by)
    await store.delete(key)
    return True


async def of_branch(database: Database, *, branch_id: str) -> Sequence[BranchPhoto]:
    async with database.sessions() as session:
        return await photos_of(session, branch_id)


async def read(
    database: Database, *, store: ObjectStore, branch_id: str, photo_id: uuid.UUID
) -> tuple[BranchPhoto, bytes]:
    async with database.sessions() as session:
        row = await session.get(BranchPhoto, photo_id)
    if row is None or row.branch_id != branch_id:
        raise ObjectNotFound(str(photo_id))
    return row, await store.get(row.key)


__all__ = ["CleanPhoto", "NoSuchBranch", "PhotoRefused", "TooManyPhotos", "add", "clean", "of_branch", "read", "remove"]
