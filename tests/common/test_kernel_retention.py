"""The kernel's tables do not grow for ever: consumed event ids past the inbox's retention
and published outbox rows past the outbox's are deleted, a batch per transaction, found
through indexes by age (docs/adr/0062)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import create_engine, func, insert, inspect, select

from common.db import Database, KernelTables, kernel_tables_of, service_metadata
from common.events.envelope import EventCatalog, utc_now
from common.events.inbox import sweep_processed_events
from common.kernel import build_kernel
from common.migrations import upgrade
from common.settings import PlatformSettings
from tests.support import tokens

SERVICES_WITH_KERNEL_TABLES = [
    "access",
    "auth",
    "branch_owner",
    "helper",
    "mlops",
    "monitoring",
    "notification",
    "running",
    "search",
]


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path) -> str:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'monitoring.db'}"
    else:
        url = request.getfixturevalue("postgres").create("monitoring")
    upgrade("monitoring", url)
    return url


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    yield database
    await database.dispose()


TABLES: KernelTables = kernel_tables_of(service_metadata())


async def consumed(
    database: Database, *, days_ago: float, count: int, consumer: str = "monitoring.probe"
) -> set[uuid.UUID]:
    ids = {uuid.uuid4() for _ in range(count)}
    at = utc_now() - timedelta(days=days_ago)
    async with database.transaction() as session:
        await session.execute(
            insert(TABLES.processed_events),
            [{"event_id": event_id, "consumer": consumer, "processed_at": at} for event_id in ids],
        )
    return ids


async def kept_ids(database: Database) -> set[uuid.UUID]:
    async with database.sessions() as session:
        return set(await session.scalars(select(TABLES.processed_events.c.event_id)))


async def test_consumed_events_past_the_retention_are_forgotten_a_batch_at_a_time(database: Database) -> None:
    old = await consumed(database, days_ago=40, count=7)
    recent = await consumed(database, days_ago=2, count=3)
    # The same event consumed by a second consumer long ago: its row goes, the recent one stays.
    await consumed(database, days_ago=40, count=2, consumer="monitoring.other")
    swept = await sweep_processed_events(database=database, tables=TABLES, retention=timedelta(days=30), batch_rows=3)
    assert swept == 9
    assert await kept_ids(database) == recent
    assert old.isdisjoint(await kept_ids(database))
    # Nothing left to sweep: one empty batch.
    assert await sweep_processed_events(database=database, tables=TABLES, retention=timedelta(days=30)) == 0


async def test_published_outbox_rows_past_their_retention_go_and_unpublished_ones_stay(database: Database) -> None:
    outbox, now = TABLES.outbox, utc_now()

    def row(*, created_days_ago: float, published_days_ago: float | None) -> dict[str, object]:
        published = None if published_days_ago is None else now - timedelta(days=published_days_ago)
        return {
            "event_id": uuid.uuid4(),
            "routing_key": "probe.v1",
            "body": "{}",
            "created_at": now - timedelta(days=created_days_ago),
            "published_at": published,
        }

    rows = [row(created_days_ago=10, published_days_ago=9) for _ in range(5)]
    rows += [row(created_days_ago=10, published_days_ago=None)]  # the broker was away for days
    rows += [row(created_days_ago=1, published_days_ago=1)]
    async with database.transaction() as session:
        await session.execute(insert(outbox), rows)
    condition = outbox.c.published_at < now - timedelta(days=7)
    assert await database.delete_in_batches(outbox, condition, batch_rows=2) == 5
    async with database.sessions() as session:
        left = set(await session.scalars(select(outbox.c.event_id)))
        assert left == {rows[5]["event_id"], rows[6]["event_id"]}
        assert await session.scalar(select(func.count()).select_from(outbox)) == 2


async def test_the_kernel_sweeps_with_the_retention_it_is_configured_with(tmp_path, database_url: str) -> None:
    settings = PlatformSettings(
        environment="test", data_dir=tmp_path, database_urls={"monitoring": database_url}, inbox_retention_days=10
    )
    kernel = build_kernel(
        "monitoring", settings, metadata=service_metadata(), catalog=EventCatalog(), keys=tokens.key_cache()
    )
    try:
        await consumed(kernel.db, days_ago=11, count=4)
        recent = await consumed(kernel.db, days_ago=9, count=2)
        assert await kernel.sweep_inbox() == 4
        assert await kept_ids(kernel.db) == recent
    finally:
        await kernel.db.dispose()


@pytest.mark.parametrize("service", SERVICES_WITH_KERNEL_TABLES)
def test_every_services_database_finds_old_rows_by_index(tmp_path, service: str) -> None:
    url = f"sqlite:///{tmp_path / f'{service}.db'}"
    upgrade(service, url)
    engine = create_engine(url)
    try:
        inspector = inspect(engine)
        outbox = {index["name"]: index["column_names"] for index in inspector.get_indexes("outbox")}
        processed = {index["name"]: index["column_names"] for index in inspector.get_indexes("processed_events")}
    finally:
        engine.dispose()
    assert outbox["ix_outbox_published_at"] == ["published_at"]
    assert processed["ix_processed_events_processed_at"] == ["processed_at"]
