"""mlops reads helper's and auth's data through roles that can only read."""

from __future__ import annotations

import sqlite3
import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from common.migrations import upgrade
from mlops import readonly
from mlops.settings import MlopsSettings
from tests.support.infra import PostgresRole


@pytest.fixture
def reader(postgres, monkeypatch):
    """The read-only role under a name of this test's own; the migrations grant it."""
    role = PostgresRole("mlops_reader")
    monkeypatch.setenv("SMARTGYM_MLOPS_READER_ROLE", role.name)
    yield role.name
    role.drop(with_databases=postgres)


@pytest.mark.parametrize("service", ["helper", "auth"])
async def test_the_reader_role_can_select_and_nothing_else(service, postgres, reader, tmp_path):
    url = postgres.create(f"ro{service}")
    upgrade(service, url)
    settings = MlopsSettings(
        environment="test", data_dir=tmp_path, database_urls={service: url}, mlops_reader_role=reader
    )
    engine = readonly.reader_engine(settings, service)
    table = "tasks" if service == "helper" else "users"
    try:
        async with engine.connect() as connection:
            assert (await connection.execute(text("SELECT current_user"))).scalar() == reader
            assert (await connection.execute(text(f"SELECT count(*) FROM {table}"))).scalar() == 0
        refused = [
            f"DELETE FROM {table}",
            f"UPDATE {table} SET id = id",
            "CREATE TABLE mlops_was_here (id int)",
            f"INSERT INTO outbox (event_id, routing_key, body, created_at) VALUES ('{uuid.uuid4()}', 'x', 'x', now())",
        ]
        for statement in refused:
            async with engine.connect() as connection:
                with pytest.raises(DBAPIError) as caught:
                    await connection.execute(text(statement))
            # Refused by the server: a read-only transaction, or no privilege.
            assert "read-only" in str(caught.value) or "permission denied" in str(caught.value), statement
        # Even with the read-only default switched off, the grants refuse a write.
        async with engine.connect() as connection:
            await connection.execute(text("SET default_transaction_read_only = off"))
            await connection.commit()
            await connection.execute(text("SET TRANSACTION READ WRITE"))
            with pytest.raises(DBAPIError, match="permission denied"):
                await connection.execute(text(f"DELETE FROM {table}"))
    finally:
        await engine.dispose()


async def test_embedded_mode_opens_helpers_sqlite_file_read_only(tmp_path):
    settings = MlopsSettings(environment="test", data_dir=tmp_path)
    upgrade("helper", settings.database_url("helper"))
    engine = readonly.reader_engine(settings, "helper")
    try:
        async with engine.connect() as connection:
            assert (await connection.execute(text("SELECT count(*) FROM tasks"))).scalar() == 0
            with pytest.raises(DBAPIError) as caught:
                await connection.execute(text("DELETE FROM tasks"))
        assert isinstance(caught.value.orig, sqlite3.OperationalError)
        assert "readonly" in str(caught.value)
    finally:
        await engine.dispose()
