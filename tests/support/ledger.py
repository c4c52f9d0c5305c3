"""A tiny producer/consumer pair for testing the kernel's outbox, bus and inbox.

The consumer records each event's effect as one row in ``effects``; an event whose
effect appears twice is a duplicate effect, one that never appears is lost.
"""

from __future__ import annotations

from typing import ClassVar

from sqlalchemy import Column, Integer, MetaData, Table, Uuid, create_engine, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from common.db import BigIntPK, Database, KernelTables, kernel_tables_of, service_metadata, sync_url
from common.events.bus import Subscriptions
from common.events.envelope import Event, EventCatalog
from common.events.outbox import UnitOfWork, bind_subscriptions, idempotent
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


def create_schema(url: str) -> None:
    engine = create_engine(sync_url(url))
    METADATA.create_all(engine)
    engine.dispose()


async def record_effect(event: EntryRecorded, uow: UnitOfWork) -> None:
    await uow.session.execute(EFFECTS.insert().values(event_id=event.event_id, seq=event.seq))


def consumer_subscriptions(
    service: str, database: Database, metrics: Metrics, *, handler=record_effect
) -> Subscriptions:
    declared = Subscriptions(service)
    declared.add(EntryRecorded, handler, name="record_effect")
    return bind_subscriptions(
        declared,
        lambda consumer, fn: idempotent(database, TABLES, metrics, consumer, fn, on_commit=lambda: None),
    )


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
