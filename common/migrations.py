"""Alembic, per service: each service keeps its migrations in ``<service>/migrations``
and applies them to its own database only.

Migrations run on a synchronous driver (psycopg or pysqlite), so they can run from a
CLI, from a test, or from a thread beside a running event loop.
"""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path

from alembic import command, context, op
from alembic.config import Config
from sqlalchemy import MetaData, create_engine, pool

from common.db import sync_url

log = logging.getLogger(__name__)


def alembic_config(service: str, database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(resources.files(service) / "migrations"))
    # Percent signs in passwords would be read as interpolation by configparser.
    config.set_main_option("sqlalchemy.url", sync_url(database_url).render_as_string(False).replace("%", "%%"))
    return config


def upgrade(service: str, database_url: str, revision: str = "head") -> None:
    log.info("migrating", extra={"service": service, "revision": revision})
    url = sync_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(service, database_url), revision)


def run_env(target_metadata: MetaData) -> None:
    """The body of every service's ``migrations/env.py``."""
    url = context.config.get_main_option("sqlalchemy.url")
    if context.is_offline_mode():
        context.configure(url=url, target_metadata=target_metadata, literal_binds=True, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(url or "", poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            # SQLite cannot ALTER most things; batch mode rebuilds tables instead.
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


def create_kernel_tables() -> None:
    """Create the outbox and processed-event tables; called by each service's first migration."""
    import sqlalchemy as sa
    from alembic import op

    from common.db import BigIntPK

    op.create_table(
        "outbox",
        sa.Column("id", BigIntPK, autoincrement=True, nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("routing_key", sa.String(length=120), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("correlation_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_outbox"),
        sa.UniqueConstraint("event_id", name="uq_outbox_event_id"),
    )
    op.create_index(
        "ix_outbox_unpublished",
        "outbox",
        ["id"],
        unique=False,
        postgresql_where=sa.text("published_at IS NULL"),
        sqlite_where=sa.text("published_at IS NULL"),
    )
    op.create_table(
        "processed_events",
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("consumer", sa.String(length=120), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("event_id", "consumer", name="pk_processed_events"),
    )


_AGE_INDEXES = (
    ("ix_outbox_published_at", "outbox", "published_at", "published_at IS NOT NULL"),
    ("ix_processed_events_processed_at", "processed_events", "processed_at", None),
)


def create_kernel_age_indexes() -> None:
    """Indexes by age on the outbox and the inbox, for their retention sweeps; a later
    migration of each service calls it (its first created the tables without them).

    On PostgreSQL they are built CONCURRENTLY, outside the migration's transaction: a plain
    build locks out writes, and an inbox that was never swept can take minutes to index
    while every consumer waits. A concurrent build that failed leaves an invalid index of
    the same name, so it is dropped first."""
    import sqlalchemy as sa

    if op.get_bind().dialect.name != "postgresql":
        for name, table, column, where in _AGE_INDEXES:
            op.create_index(name, table, [column], unique=False, sqlite_where=sa.text(where) if where else None)
        return
    with op.get_context().autocommit_block():
        for name, table, column, where in _AGE_INDEXES:
            op.drop_index(name, table_name=table, postgresql_concurrently=True, if_exists=True)
            op.create_index(
                name,
                table,
                [column],
                unique=False,
                postgresql_concurrently=True,
                postgresql_where=sa.text(where) if where else None,
            )


def drop_kernel_age_indexes() -> None:
    concurrently = op.get_bind().dialect.name == "postgresql"
    for name, table, _, _ in _AGE_INDEXES:
        if concurrently:
            with op.get_context().autocommit_block():
                op.drop_index(name, table_name=table, postgresql_concurrently=True, if_exists=True)
        else:
            op.drop_index(name, table_name=table)


def drop_kernel_tables() -> None:
    from alembic import op

    op.drop_table("processed_events")
    op.drop_index("ix_outbox_unpublished", table_name="outbox")
    op.drop_table("outbox")


def make_append_only(table: str) -> None:
    """On PostgreSQL, refuse UPDATE and DELETE on ``table`` for everybody, the service
    included (audit trails). Elsewhere (SQLite, embedded mode) a no-op."""
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        f"CREATE FUNCTION {table}_append_only() RETURNS trigger LANGUAGE plpgsql AS "
        f"$$ BEGIN RAISE EXCEPTION '{table} is append-only'; END $$"
    )
    op.execute(
        f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
        f"FOR EACH ROW EXECUTE FUNCTION {table}_append_only()"
    )


def drop_append_only(table: str) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"DROP TRIGGER {table}_append_only ON {table}")
    op.execute(f"DROP FUNCTION {table}_append_only()")


def create_reader_role(role: str, *, password_env: str) -> None:
    """On PostgreSQL, a login role that may only SELECT this database's tables (now and
    those later migrations add), for a service that reads another's data for training.

    Roles are cluster-wide: one that exists already (made by another database's migration
    or by the DBA) is granted, not created again. Creating it needs CREATEROLE; a
    migration user without it leaves the creation to the DBA (logged) and grants once the
    role exists, on the next run. The password comes from the environment variable
    ``password_env`` when set. The role also defaults to read-only transactions, a second
    lock should a grant ever be too wide. Elsewhere a no-op: in embedded mode the reader
    opens the SQLite file read-only.
    """
    import os

    from sqlalchemy import text

    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    _check_role_name(role)
    password = os.environ.get(password_env, "").replace("'", "''")  # utility statements take no parameters
    settings = f"ALTER ROLE {role} SET default_transaction_read_only = on;"
    if password:
        settings += f" ALTER ROLE {role} PASSWORD '{password}';"
    op.execute(
        f"DO $$ BEGIN "
        f"IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN "
        f"BEGIN CREATE ROLE {role} LOGIN; "
        f"EXCEPTION WHEN duplicate_object OR unique_violation OR insufficient_privilege THEN NULL; END; "
        f"END IF; "
        f"BEGIN {settings} EXCEPTION WHEN insufficient_privilege OR undefined_object THEN NULL; END; "
        f"END $$"
    )
    if bind.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :role"), {"role": role}).first() is None:
        log.warning("role %s does not exist and may not be created here: ask the DBA, then migrate again", role)
        return
    op.execute(f'GRANT CONNECT ON DATABASE "{bind.engine.url.database}" TO {role}')
    op.execute(f"GRANT USAGE ON SCHEMA public TO {role}")
    op.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}")
    op.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO {role}")


def _check_role_name(role: str) -> None:
    # Role names reach SQL text (DDL takes no parameters): letters, digits, underscores only.
    if not role.replace("_", "").isalnum() or not role.isascii() or not role[0].isalpha():
        raise ValueError(f"not a role name: {role!r}")


def drop_reader_grants(role: str) -> None:
    """Undo :func:`create_reader_role` for this database (the role stays: others may use it)."""
    from sqlalchemy import text

    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    _check_role_name(role)
    if bind.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :role"), {"role": role}).first() is None:
        return
    op.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE SELECT ON TABLES FROM {role}")  # noqa: S608
    op.execute(f"REVOKE SELECT ON ALL TABLES IN SCHEMA public FROM {role}")  # noqa: S608 - a checked role name
    op.execute(f"REVOKE USAGE ON SCHEMA public FROM {role}")
    op.execute(f'REVOKE CONNECT ON DATABASE "{bind.engine.url.database}" FROM {role}')
