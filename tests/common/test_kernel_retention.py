"""The kernel's tables do not grow for ever: consumed event ids past the inbox's retention
and published outbox rows past the outbox's are deleted, a batch per transaction, found
through indexes by age (docs/adr/0062)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, event, func, insert, inspect, select, text

from common.db import Database, KernelTables, kernel_tables_of, service_metadata
from common.events.envelope import EventCatalog, utc_now
from common.events.inbox import sweep_processed_events
from common.kernel import build_kernel
from common.migrations import upgrade
from common.settings import PlatformSettings
from tests.support import tokens

ROOT = Path(__file__).resolve().parents[2]
# Every service whose first migration creates the kernel's tables, found rather than listed:
# a new service is checked without anyone remembering to add it here.
SERVICES_WITH_KERNEL_TABLES = sorted(
    path.parents[2].name
    for path in ROOT.glob("*/migrations/versions/0001_*.py")
    if "create_kernel_tables()" in path.read_text()
)


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
    database: Database,
    *,
    days_ago: float,
    count: int = 0,
    consumer: str = "monitoring.probe",
    ids: set[uuid.UUID] | None = None,
) -> set[uuid.UUID]:
    ids = ids or {uuid.uuid4() for _ in range(count)}
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


def counting_deletes(database: Database) -> list[str]:
    """Every DELETE statement the database runs from now on."""
    statements: list[str] = []

    def record(_connection: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("DELETE"):
            statements.append(statement)

    event.listen(database.engine.sync_engine, "before_cursor_execute", record)
    return statements


async def test_consumed_events_past_the_retention_are_forgotten_a_batch_at_a_time(database: Database) -> None:
    old = await consumed(database, days_ago=40, count=7)
    # Two of them consumed by a second consumer too: long ago (goes) and recently (stays).
    some_old = set(list(old)[:2])
    await consumed(database, days_ago=40, ids=some_old, consumer="monitoring.other")
    recent = await consumed(database, days_ago=2, count=3)
    await consumed(database, days_ago=2, ids=set(list(old)[2:4]), consumer="monitoring.late")
    deletes = counting_deletes(database)
    swept = await sweep_processed_events(database=database, tables=TABLES, retention=timedelta(days=30), batch_rows=3)
    assert swept == 9
    assert len(deletes) == 4  # 3 + 3 + 3, then a short batch ends the sweep
    assert await kept_ids(database) == recent | set(list(old)[2:4])
    # Nothing left to sweep: one empty batch.
    assert await sweep_processed_events(database=database, tables=TABLES, retention=timedelta(days=30)) == 0


async def test_a_sweep_stops_after_its_most_batches_and_the_next_goes_on(database: Database) -> None:
    await consumed(database, days_ago=40, count=10)
    for expected in (6, 4):
        swept = await sweep_processed_events(
            database=database, tables=TABLES, retention=timedelta(days=30), batch_rows=2, max_batches=3
        )
        assert swept == expected
    assert await kept_ids(database) == set()


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
    assert await database.delete_in_batches(table=outbox, condition=condition, batch_rows=2) == 5
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
        labels = {"service": "monitoring", "table": "processed_events"}
        assert kernel.metrics.registry.get_sample_value("smartgym_retention_swept_rows_total", labels) == 4
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


def test_on_postgresql_the_age_indexes_are_built_valid_and_the_outbox_one_partial(postgres) -> None:
    url = postgres.create("monitoring")
    upgrade("monitoring", url)  # built CONCURRENTLY, outside the migration's transaction
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                text(
                    "SELECT c.relname, i.indisvalid, pg_get_indexdef(i.indexrelid) FROM pg_index i"
                    " JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname LIKE 'ix_%_at'"
                )
            ).all()
    finally:
        engine.dispose()
    found = {name: (valid, definition) for name, valid, definition in rows}
    assert found["ix_processed_events_processed_at"][0] is True
    assert found["ix_outbox_published_at"][0] is True
    assert "WHERE (published_at IS NOT NULL)" in found["ix_outbox_published_at"][1]
    assert "WHERE" not in found["ix_processed_events_processed_at"][1]
