"""Every service's migrations on real PostgreSQL: up, down to nothing, and up again."""

from __future__ import annotations

import pytest
import sqlalchemy.exc
from alembic import command
from sqlalchemy import create_engine, text

from common.db import sync_url
from common.migrations import alembic_config, upgrade
from smartgym.registry import SERVICES


@pytest.mark.parametrize("service", [spec.name for spec in SERVICES if spec.has_database])
def test_migrations_go_up_down_and_up_again(postgres, service):
    url = postgres.create(service)
    upgrade(service, url)
    command.downgrade(alembic_config(service, url), "base")
    upgrade(service, url)
    engine = create_engine(sync_url(url))
    with engine.connect() as connection:
        tables = set(connection.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")).scalars())
    engine.dispose()
    assert {"outbox", "processed_events", "alembic_version"} <= tables


def test_auth_audit_log_is_append_only_on_postgres(postgres):
    url = postgres.create("auth")
    upgrade("auth", url)
    engine = create_engine(sync_url(url))
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO audit_log (at, action, details) VALUES (now(), 'login_failed', '{}')"))
    for statement in ("UPDATE audit_log SET action = 'nothing'", "DELETE FROM audit_log"):
        with pytest.raises(sqlalchemy.exc.DBAPIError, match="append-only"), engine.begin() as connection:
            connection.execute(text(statement))
    engine.dispose()
