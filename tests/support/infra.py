"""Reaching the real broker and database in tests.

Locally a missing broker or database skips the tests that need it; under CI (``CI`` set)
it is a failure, so a green CI run always means they ran.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from typing import NoReturn
from urllib.parse import urlsplit

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from tests.support.processes import listening

RABBITMQ_URL = os.environ.get("SMARTGYM_TEST_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672/")
PG_ADMIN_URL = os.environ.get("SMARTGYM_TEST_PG_URL", "postgresql+psycopg://smartgym:smartgym@127.0.0.1:5432/postgres")


def _reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    return listening(parts.port or default_port, host=parts.hostname or "127.0.0.1", timeout=1)


def require(kind: str, url: str, default_port: int) -> None:
    if _reachable(url, default_port):
        return
    missing(f"{kind} not reachable at {url} (start it with scripts/services)")


def missing(message: str) -> NoReturn:
    """What a test needs is not here: a skip locally, a failure under CI (``CI`` set), so a
    green CI run always means it ran."""
    if os.environ.get("CI"):
        pytest.fail(f"{message} (CI must run every test)")
    pytest.skip(message)


def require_tool(tool: str) -> str:
    found = shutil.which(tool)
    if found is not None:
        return found
    missing(f"{tool} is not installed (scripts/services or scripts/install dev installs it)")


def require_rabbitmq() -> str:
    require("RabbitMQ", RABBITMQ_URL, 5672)
    return RABBITMQ_URL


def require_postgres() -> str:
    require("PostgreSQL", PG_ADMIN_URL, 5432)
    return PG_ADMIN_URL


class PostgresDatabases:
    """Creates throw-away databases on the real server and drops them afterwards."""

    def __init__(self, admin_url: str) -> None:
        # pre_ping: a test may restart the server under this engine (fault tests).
        self._admin = create_engine(admin_url, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
        self._admin_url = admin_url
        self._created: list[str] = []

    def create(self, label: str) -> str:
        name = f"smartgym_t_{label}_{uuid.uuid4().hex[:8]}"
        with self._admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        self._created.append(name)
        base = self._admin_url.rsplit("/", 1)[0]
        return f"{base}/{name}"

    def drop_all(self) -> None:
        with self._admin.connect() as connection:
            for name in self._created:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        self._created.clear()
        self._admin.dispose()


def _alone(what: str) -> None:
    """Refuse to take a shared service down under a test worker (pytest -n), where other
    tests are using it: such a test is marked ``exclusive`` and runs alone."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        raise RuntimeError(f"{what} beside other tests: mark the test exclusive (docs/adr/0061)")


def rabbitmqctl(*args: str, timeout: float = 60) -> None:
    if args and args[0] in ("stop_app", "stop", "stop_node", "reset"):
        _alone(f"rabbitmqctl {args[0]} of the shared broker")
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=timeout)


def restart_broker_app(down_s: float = 1.0) -> None:
    """Stop and start the RabbitMQ application (the node stays, connections all drop)."""
    rabbitmqctl("stop_app")
    time.sleep(down_s)
    rabbitmqctl("start_app")
    rabbitmqctl("await_startup")
    deadline = time.monotonic() + 30
    while not _reachable(RABBITMQ_URL, 5672):
        if time.monotonic() > deadline:
            raise RuntimeError("broker did not come back")
        time.sleep(0.2)


def postgres_cluster() -> tuple[str, str]:
    """(version, name) of the machine's PostgreSQL cluster, for pg_ctlcluster."""
    version = sorted(os.listdir("/etc/postgresql"), key=lambda name: [int(part) for part in name.split(".")])[-1]
    return version, "main"


def stop_postgres() -> None:
    """Stop the whole PostgreSQL server (fast shutdown: sessions are cut at once)."""
    _alone("stopping the shared PostgreSQL")
    version, name = postgres_cluster()
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, name, "stop", "-m", "fast"],
        check=True,
        capture_output=True,
        timeout=60,
    )


def start_postgres() -> None:
    """Start the server again. On a shared machine something else (another checkout's
    service script) may have started it first: "already running" is success too."""
    version, name = postgres_cluster()
    started = subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, name, "start"], capture_output=True, timeout=60
    )
    if started.returncode == 0:
        return
    status = subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, name, "status"], capture_output=True, timeout=30
    )
    if status.returncode != 0:
        raise RuntimeError(f"PostgreSQL did not start: {started.stderr.decode(errors='replace').strip()}")


PG_SUPERUSER_URL = os.environ.get(
    "SMARTGYM_TEST_PG_SUPERUSER_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


class PostgresRole:
    """A login role of this test's own (random suffix), made by the superuser as a DBA
    would: the services' migration user may not create roles."""

    def __init__(self, prefix: str) -> None:
        self.name = f"{prefix}_{uuid.uuid4().hex[:8]}"
        self._admin = create_engine(PG_SUPERUSER_URL, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
        with self._admin.connect() as connection:
            connection.execute(text(f"CREATE ROLE {self.name} LOGIN"))
            connection.execute(text(f"ALTER ROLE {self.name} SET default_transaction_read_only = on"))

    def drop(self, *, with_databases: PostgresDatabases) -> None:
        """End the role's sessions, drop the databases that grant it (the grants go with
        them), then the role. Retried: other tests on this machine may be restarting the
        server.

        The sessions end first, as the superuser: a closed client connection's server
        process can linger a moment, and the databases' ``DROP ... WITH (FORCE)``, run by
        the services' user, may not terminate another role's process."""
        try:
            with self._admin.connect() as connection:
                connection.execute(
                    # With a timeout: wait until each process has exited, not only been signalled.
                    text("SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE usename = :name"),
                    {"name": self.name},
                )
            with_databases.drop_all()
            deadline = time.monotonic() + 60
            while True:
                try:
                    with self._admin.connect() as connection:
                        connection.execute(text(f"DROP ROLE IF EXISTS {self.name}"))
                    return
                except OperationalError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(1.0)
        finally:
            self._admin.dispose()
