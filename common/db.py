"""Async database access for one service's own database.

PostgreSQL (psycopg 3) in production; SQLite (aiosqlite) in embedded mode. The same
models and migrations run on both.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.array import ListBinaryDumper
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    TypeDecorator,
    Uuid,
    any_,
    delete,
    event,
    func,
    literal_column,
    select,
    text,
)
from sqlalchemy.engine import URL, Dialect, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import UserDefinedType

# Constraint names are spelled out so alembic migrations are identical on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC, on PostgreSQL and on SQLite alike
    (SQLite hands back naive values otherwise)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: SmartGym stores aware UTC timestamps only")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class _BinaryList(list[Any]):
    """A list that psycopg sends as a binary array (see :class:`BinaryArray`)."""


# Only values of this private class are affected; every connection made after this import
# (the kernel's engines connect later) knows it.
psycopg.adapters.register_dumper(_BinaryList, ListBinaryDumper)


class BinaryArray(UserDefinedType[list[Any]]):
    """A PostgreSQL array parameter sent in binary format, for statements of fixed shape
    that take a batch's values as arrays (``unnest(:bodies)``, ``id = ANY(:ids)``).

    psycopg sends a Python list as an array literal: every string element quoted and
    backslash-escaped by a Python regex, ~16 µs for an event's JSON body on these CPUs,
    the largest single cost of writing a batch of outbox rows. In binary form an element
    is its length and its bytes (~0.2 µs). The element type comes from the values (str:
    text[], UUID: uuid[], int: the smallest integer array that holds them); SQLAlchemy's
    ``ARRAY`` would also copy the list element by element before psycopg sees it.
    """

    cache_ok = True
    # ``:bodies::text[]``: the server knows the type even when every element is NULL.
    render_bind_cast = True

    def __init__(self, element: str) -> None:
        self.element = element

    def get_col_spec(self, **_: Any) -> str:
        return f"{self.element}[]"

    def bind_processor(self, dialect: Dialect) -> Any:
        return _BinaryList


# SQLite only auto-increments INTEGER PRIMARY KEY, not BIGINT.
BigIntPK = BigInteger().with_variant(Integer(), "sqlite")
#: The largest id a ``BigIntPK`` column holds: an API that takes such an id bounds it by
#: this, so a larger number is a 422 and not the driver's overflow (a 500).
MAX_ROW_ID = 2**63 - 1


def service_metadata() -> MetaData:
    """A MetaData for one service, holding the kernel's outbox and inbox tables as well."""
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    add_kernel_tables(metadata)
    return metadata


@dataclass(frozen=True)
class KernelTables:
    outbox: Table
    processed_events: Table


def add_kernel_tables(metadata: MetaData) -> KernelTables:
    """The outbox (events waiting for the broker) and the processed-event inbox."""
    outbox = Table(
        "outbox",
        metadata,
        Column("id", BigIntPK, primary_key=True, autoincrement=True),
        Column("event_id", Uuid, nullable=False, unique=True),
        Column("routing_key", String(120), nullable=False),
        Column("body", Text, nullable=False),
        Column("correlation_id", String(64), nullable=True),
        Column("created_at", UtcDateTime(), nullable=False),
        Column("published_at", UtcDateTime(), nullable=True),
        Column("attempts", Integer, nullable=False, server_default="0"),
        Column("last_error", Text, nullable=True),
    )
    # The relay only ever scans unpublished rows: a partial index keeps that scan tiny
    # however many published rows are waiting for the retention sweep.
    Index(
        "ix_outbox_unpublished",
        outbox.c.id,
        postgresql_where=outbox.c.published_at.is_(None),
        sqlite_where=outbox.c.published_at.is_(None),
    )
    processed = Table(
        "processed_events",
        metadata,
        Column("event_id", Uuid, nullable=False),
        Column("consumer", String(120), nullable=False),
        Column("processed_at", UtcDateTime(), nullable=False),
        PrimaryKeyConstraint("event_id", "consumer"),
    )
    # The retention sweeps find old rows by age: without these, each sweep read the whole
    # table (docs/adr/0062).
    Index(
        "ix_outbox_published_at",
        outbox.c.published_at,
        postgresql_where=outbox.c.published_at.isnot(None),
        sqlite_where=outbox.c.published_at.isnot(None),
    )
    Index("ix_processed_events_processed_at", processed.c.processed_at)
    return KernelTables(outbox=outbox, processed_events=processed)


def kernel_tables_of(metadata: MetaData) -> KernelTables:
    return KernelTables(outbox=metadata.tables["outbox"], processed_events=metadata.tables["processed_events"])


def sync_url(url: str | URL) -> URL:
    """The synchronous twin of an async URL (migrations run on a plain driver)."""
    parsed = make_url(url)
    if parsed.drivername == "sqlite+aiosqlite":
        return parsed.set(drivername="sqlite")
    return parsed


# A retention sweep's batch, and the most batches of one sweep (see Database.delete_in_batches).
SWEEP_BATCH_ROWS = 5_000
SWEEP_MAX_BATCHES = 100


class Database:
    """One engine and session factory for one service's database."""

    def __init__(self, url: str, *, pool_size: int = 10, echo: bool = False) -> None:
        self.url = make_url(url)
        engine_options: dict[str, Any] = {"echo": echo, "pool_pre_ping": True}
        if self.is_sqlite:
            database = self.url.database
            if database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
        else:
            engine_options.update(pool_size=pool_size, max_overflow=pool_size)
        self.engine: AsyncEngine = create_async_engine(self.url, **engine_options)
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    @property
    def is_sqlite(self) -> bool:
        return self.url.get_backend_name() == "sqlite"

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session inside one transaction: committed on success, rolled back on error."""
        async with self.sessions() as session, session.begin():
            yield session

    async def delete_in_batches(
        self,
        *,
        table: Table,
        condition: ColumnElement[bool],
        batch_rows: int = SWEEP_BATCH_ROWS,
        max_batches: int = SWEEP_MAX_BATCHES,
        on_deleted: Callable[[int], object] | None = None,
    ) -> int:
        """Delete ``table``'s rows that match ``condition``, ``batch_rows`` at a time, each
        batch its own short transaction: a sweep of millions of rows never holds their locks
        (or a replica's connection) for long. At most ``max_batches`` per call: a first
        sweep of a table that grew for months is spread over the next calls instead of a
        burst of transactions (and write-ahead log). ``on_deleted`` hears each committed
        batch's count, so a sweep that fails half-way still reports what went. Returns how
        many rows went."""
        # By physical row id: a key IN (subquery) made PostgreSQL's planner hash-join against
        # a scan of the whole table for every batch when many rows were due (a first sweep).
        row: ColumnElement[Any] = literal_column("rowid" if self.is_sqlite else "ctid")
        due = select(row).select_from(table).where(condition).limit(batch_rows)
        chosen: ColumnElement[bool] = row.in_(due) if self.is_sqlite else row == any_(func.array(due.scalar_subquery()))
        statement = delete(table).where(condition, chosen)
        deleted = 0
        for _ in range(max_batches):
            async with self.transaction() as session:
                result = await session.execute(statement)
            count = int(getattr(result, "rowcount", 0) or 0)
            deleted += count
            if on_deleted is not None:
                on_deleted(count)
            if count < batch_rows:
                break
        return deleted

    async def ping(self) -> None:
        async with self.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers run beside the single writer; busy_timeout turns writer
    # contention into a short wait instead of "database is locked".
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


__all__ = [
    "MAX_ROW_ID",
    "BigIntPK",
    "BinaryArray",
    "Database",
    "KernelTables",
    "add_kernel_tables",
    "kernel_tables_of",
    "service_metadata",
    "sync_url",
]
