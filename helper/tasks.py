"""Task types, who may work where, and submitting a task with its photos."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from common.db import Database
from common.events.envelope import utc_now
from common.kernel import ServiceKernel
from contracts import PhotoRef, TaskSubmitted
from helper.models import Binding, DailyCount, Task, TaskPhoto, TaskType
from helper.photos import CleanPhoto, PhotoRefused, clean
from helper.settings import HelperSettings
from helper.store import PhotoStore

MAX_PHOTOS = 5


class SubmissionRefused(Exception):
    """A submission that cannot be accepted; ``status`` is the HTTP status it maps to."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class TaskTypeIn:
    category: str
    title: str
    reward_krw: int
    expected_photos: int
    daily_limit: int
    active: bool


async def put_task_type(database: Database, *, branch_id: str, code: str, spec: TaskTypeIn) -> TaskType:
    async with database.transaction() as session:
        row = await session.get(TaskType, (branch_id, code))
        if row is None:
            row = TaskType(branch_id=branch_id, code=code)
            session.add(row)
        row.category, row.title, row.reward_krw = spec.category, spec.title, spec.reward_krw
        row.expected_photos, row.daily_limit, row.active = spec.expected_photos, spec.daily_limit, spec.active
        row.updated_at = utc_now()
    return row


async def task_types_of(database: Database, *, branch_id: str) -> Sequence[TaskType]:
    async with database.sessions() as session:
        rows = await session.scalars(select(TaskType).where(TaskType.branch_id == branch_id).order_by(TaskType.code))
        return rows.all()


async def bind(database: Database, *, helper_id: uuid.UUID, branch_id: str, by: uuid.UUID) -> None:
    async with database.transaction() as session:
        if await session.get(Binding, (helper_id, branch_id)) is None:
            session.add(Binding(helper_id=helper_id, branch_id=branch_id, bound_by=by, bound_at=utc_now()))


async def unbind(database: Database, *, helper_id: uuid.UUID, branch_id: str) -> bool:
    async with database.transaction() as session:
        result = await session.execute(
            delete(Binding).where(Binding.helper_id == helper_id, Binding.branch_id == branch_id)
        )
        return bool(getattr(result, "rowcount", 0))


async def branches_of(database: Database, *, helper_id: uuid.UUID) -> list[str]:
    async with database.sessions() as session:
        rows = await session.scalars(select(Binding.branch_id).where(Binding.helper_id == helper_id))
        return sorted(rows)


@dataclass(frozen=True)
class Submitted:
    task: Task
    replay: bool  # the same client key was seen before: this is the task it made


async def submit(
    kernel: ServiceKernel,
    *,
    settings: HelperSettings,
    store: PhotoStore,
    helper_id: uuid.UUID,
    branch_id: str,
    task_type: str,
    client_key: str,
    uploads: Sequence[bytes],
) -> Submitted:
    """Accept a task: photos checked and cleaned, the daily limit reserved, the task and
    its TaskSubmitted committed together. A retry with the same client key returns the
    task the first attempt made and changes nothing."""
    database = kernel.db
    existing = await _by_client_key(database, helper_id, client_key)
    if existing is not None:
        return Submitted(existing, replay=True)
    if not 1 <= len(uploads) <= MAX_PHOTOS:
        raise SubmissionRefused(422, f"send between 1 and {MAX_PHOTOS} photos, not {len(uploads)}")
    # Refused before any photo is decoded (the transaction below checks again, race-free).
    async with database.sessions() as session:
        if await session.get(Binding, (helper_id, branch_id)) is None:
            raise SubmissionRefused(403, "you are not bound to this branch")
    zone = ZoneInfo(settings.helper_timezone)
    photos: list[CleanPhoto] = []
    for position, data in enumerate(uploads):
        try:
            photos.append(
                await asyncio.to_thread(
                    clean,
                    data,
                    max_bytes=settings.helper_photo_max_bytes,
                    max_pixels=settings.helper_photo_max_pixels,
                    local_tz=zone,
                )
            )
        except PhotoRefused as exc:
            raise SubmissionRefused(exc.status, f"photo {position + 1}: {exc.reason}") from exc
    now = utc_now()
    task_id = uuid.uuid4()
    try:
        async with kernel.unit_of_work() as uow:
            session = uow.session
            if await session.get(Binding, (helper_id, branch_id)) is None:
                raise SubmissionRefused(403, "you are not bound to this branch")
            kind = await session.get(TaskType, (branch_id, task_type))
            if kind is None or not kind.active:
                raise SubmissionRefused(404, f"branch {branch_id} has no active task type {task_type!r}")
            if not await _reserve(session, helper_id, branch_id, kind, now.astimezone(zone).date(), database.is_sqlite):
                raise SubmissionRefused(429, f"daily limit of {kind.daily_limit} {task_type} tasks reached")
            task = Task(
                id=task_id,
                helper_id=helper_id,
                branch_id=branch_id,
                task_type=task_type,
                category=kind.category,
                title=kind.title,
                client_key=client_key,
                reward_krw=kind.reward_krw,
                expected_photos=kind.expected_photos,
                photo_count=len(photos),
                status="submitted",
                submitted_at=now,
                reasons=[],
            )
            session.add(task)
            refs: list[PhotoRef] = []
            for position, photo in enumerate(photos):
                key = f"{branch_id}/{task_id}/{position}.{photo.extension}"
                session.add(
                    TaskPhoto(
                        task_id=task_id,
                        position=position,
                        branch_id=branch_id,
                        key=key,
                        sha256=photo.sha256,
                        content_type=photo.content_type,
                        size_bytes=len(photo.data),
                        width=photo.width,
                        height=photo.height,
                        captured_at=photo.captured_at,
                        phash=photo.phash,
                        submitted_at=now,
                    )
                )
                refs.append(
                    PhotoRef(
                        key=key,
                        sha256=photo.sha256,
                        content_type=photo.content_type,
                        size_bytes=len(photo.data),
                        width=photo.width,
                        height=photo.height,
                        captured_at=photo.captured_at,
                    )
                )
            await session.flush()  # a duplicate client key fails here, before any upload
            # Photos are stored before the commit: a committed task always has its photos.
            for ref, photo in zip(refs, photos, strict=True):
                await store.put(ref.key, photo.data, photo.content_type)
            uow.emit(
                TaskSubmitted(
                    task_id=task_id,
                    helper_id=helper_id,
                    branch_id=branch_id,
                    task_type=task_type,
                    category=kind.category,
                    title=kind.title,
                    reward_krw=kind.reward_krw,
                    expected_photos=kind.expected_photos,
                    photos=tuple(refs),
                    submitted_at=now,
                )
            )
    except IntegrityError:
        # The same client key raced us and won: answer with its task.
        existing = await _by_client_key(database, helper_id, client_key)
        if existing is None:
            raise
        return Submitted(existing, replay=True)
    return Submitted(task, replay=False)


async def _by_client_key(database: Database, helper_id: uuid.UUID, client_key: str) -> Task | None:
    async with database.sessions() as session:
        found: Task | None = await session.scalar(
            select(Task).where(Task.helper_id == helper_id, Task.client_key == client_key)
        )
        return found


async def _reserve(
    session: AsyncSession, helper_id: uuid.UUID, branch_id: str, kind: TaskType, day: date, is_sqlite: bool
) -> bool:
    """Count one more submission unless the limit is reached. The conditional UPDATE
    locks the counter row; a concurrent submission waits and then re-reads the count, so
    the limit holds however many arrive at once."""
    dialect_insert = sqlite.insert if is_sqlite else postgresql.insert
    await session.execute(
        dialect_insert(DailyCount)
        .values(helper_id=helper_id, branch_id=branch_id, task_type=kind.code, day=day, used=0)
        .on_conflict_do_nothing()
    )
    reserved = await session.execute(
        update(DailyCount)
        .where(
            DailyCount.helper_id == helper_id,
            DailyCount.branch_id == branch_id,
            DailyCount.task_type == kind.code,
            DailyCount.day == day,
            DailyCount.used < kind.daily_limit,
        )
        .values(used=DailyCount.used + 1)
        .returning(DailyCount.used)
    )
    return reserved.scalar() is not None


async def tasks_of(
    database: Database, *, helper_id: uuid.UUID, limit: int, before: datetime | None = None
) -> Sequence[Task]:
    query = select(Task).where(Task.helper_id == helper_id)
    if before is not None:
        query = query.where(Task.submitted_at < before)
    async with database.sessions() as session:
        rows = await session.scalars(query.order_by(Task.submitted_at.desc()).limit(limit))
        return rows.all()


async def task_of(database: Database, *, task_id: uuid.UUID) -> Task | None:
    async with database.sessions() as session:
        return await session.get(Task, task_id)


async def photo(database: Database, *, task_id: uuid.UUID, position: int) -> TaskPhoto | None:
    async with database.sessions() as session:
        return await session.get(TaskPhoto, (task_id, position))


async def record_decision(
    session: AsyncSession, *, task_id: uuid.UUID, approved: bool, reason: str, at: datetime
) -> None:
    # One UPDATE, no read first: the ledger applies decisions in batches.
    await session.execute(
        update(Task)
        .where(Task.id == task_id)
        .values(status="approved" if approved else "rejected", decided_at=at, decision_reason=reason or None)
        .execution_options(synchronize_session=False)
    )
