"""A tiny producer/consumer pair for testing the kernel's outbox, bus and inbox.

The consumer records each event's effect as one row in ``effects``; an event whose
effect appears twice is a duplicate effect, one that never appears is lost.
"""

from __future__ import annotations

import uuid
from typing import ClassVar

from sqlalchemy import Column, Integer, MetaData, Table, Uuid, create_engine, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import registry

from common.db import BigIntPK, Database, KernelTables, kernel_tables_of, service_metadata, sync_url
from common.events.bus import Subscriptions
from common.events.envelope import Event, EventCatalog
from common.events.inbox import bind_idempotent
from common.events.outbox import UnitOfWork
from common.observability import Metrics

CATALOG = EventCatalog()


@CATALOG.register
class EntryRecorded(Event):
    event_name: ClassVar[str] = "TestEntryRecorded"
    event_version: ClassVar[int] = 1

    seq: int
    fail: bool = False


def ledger_metadata() -> MetaData:
    metadata = service_metadata()
    Table(
        "effects",
        metadata,
        Column("id", BigIntPK, primary_key=True, autoincrement=True),
        Column("event_id", Uuid, nullable=False, index=True),
        Column("seq", Integer, nullable=False),
    )
    return metadata


METADATA = ledger_metadata()
EFFECTS = METADATA.tables["effects"]
TABLES: KernelTables = kernel_tables_of(METADATA)


class Effect:
    """ORM view of ``effects``: handlers add objects and the unit of work flushes them
    in one multi-row INSERT, as real services' handlers do."""

    def __init__(self, event_id: uuid.UUID, seq: int) -> None:
        self.event_id = event_id
        self.seq = seq


registry().map_imperatively(Effect, EFFECTS)


def create_schema(url: str) -> None:
    engine = create_engine(sync_url(url))
    METADATA.create_all(engine)
    engine.dispose()


async def record_effect(event: EntryRecorded, uow: UnitOfWork) -> None:
    uow.session.add(Effect(event.event_id, event.seq))


def consumer_subscriptions(
    service: str, database: Database, metrics: Metrics, *, handler=record_effect
) -> Subscriptions:
    declared = Subscriptions(service)
    declared.add(EntryRecorded, handler, name="record_effect")
    return bind_idempotent(declared, database, TABLES, metrics, on_commit=lambda: None)


async def effect_counts(session: AsyncSession) -> tuple[int, int, int]:
    """(rows, distinct events, events applied more than once)."""
    rows = await session.scalar(select(func.count()).select_from(EFFECTS))
    distinct = await session.scalar(select(func.count(func.distinct(EFFECTS.c.event_id))))
    twice = await session.scalar(
        select(func.count()).select_from(
            select(EFFECTS.c.event_id).group_by(EFFECTS.c.event_id).having(func.count() > 1).subquery()
        )
    )
    return int(rows or 0), int(distinct or 0), int(twice or 0)
