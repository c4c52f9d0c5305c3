"""Monitoring replicas sharing devices through leases, as real processes, and what the
devices saw of them: used by the sharding test and by ``bench/monitoring_scale.py``.

Which replica pinged a device is read at the device (the pinger's User-Agent names its
replica), so "watched twice" and "unwatched" never rely on monitoring's own account.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from tests.support.amqp import delete_queues_with_prefixes
from tests.support.apps import free_port
from tests.support.infra import RABBITMQ_URL
from tests.support.processes import clean_env, start, stop, wait_healthy

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Replicas:
    """Monitoring processes on one database, ``replica-0`` … ``replica-N``."""

    database: str
    api_ports: list[int]
    heartbeat_ports: list[int]
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    # The prefix of the replicas' bus namespaces (one each), deleted from the shared
    # broker when they stop: quorum queues left behind run it out of file handles.
    namespace_prefix: str = field(default_factory=lambda: f"shard{uuid.uuid4().hex[:8]}")

    @property
    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{port}" for port in self.api_ports]

    @staticmethod
    def name(number: int) -> str:
        return f"replica-{number}"

    def kill(self, number: int) -> None:
        """``kill -9``: no goodbye, its leases simply stop being renewed."""
        self.processes[number].kill()
        self.processes[number].wait()

    def stop(self) -> None:
        for process in self.processes:
            stop(process)
        # On a thread of its own: the caller may be inside an event loop.
        sweep = threading.Thread(target=_delete_queues, args=(self.namespace_prefix,), daemon=True)
        sweep.start()
        sweep.join(timeout=60)


def _delete_queues(prefix: str) -> None:
    with contextlib.suppress(Exception):  # housekeeping: never fails the run
        asyncio.run(delete_queues_with_prefixes(RABBITMQ_URL, (prefix,)))


def start_replicas(
    count: int,
    *,
    database: str,
    auth_url: str,
    scratch: Path,
    period_s: float,
    shards: int,
    timeout_s: float | None = None,
    max_connections: int | None = None,
    log_level: str = "WARNING",
    startup_s: float = 60.0,
    takeover_spread_s: float | None = None,
) -> Replicas:
    """Start ``count`` replicas (the devices' ping URLs on 127.1.x.y are declared
    equipment networks) and wait until each answers ``/healthz``. ``timeout_s``,
    ``max_connections`` and ``takeover_spread_s`` left None keep the production defaults."""
    replicas = Replicas(database, [free_port() for _ in range(count)], [free_port() for _ in range(count)])
    try:
        for number in range(count):
            extra = {
                "SMARTGYM_MONITORING_PING_TIMEOUT_S": None if timeout_s is None else str(timeout_s),
                "SMARTGYM_MONITORING_MAX_CONNECTIONS": None if max_connections is None else str(max_connections),
                "SMARTGYM_MONITORING_TAKEOVER_SPREAD_S": None if takeover_spread_s is None else str(takeover_spread_s),
            }
            env = clean_env(
                SMARTGYM_BROKER_URL=RABBITMQ_URL,
                SMARTGYM_BUS_NAMESPACE=f"{replicas.namespace_prefix}r{number}",
                SMARTGYM_AUTH_URL=auth_url,
                SMARTGYM_DATA_DIR=str(scratch),
                SMARTGYM_LOG_LEVEL=log_level,
                SMARTGYM_MONITORING_DATABASE_URL=database,
                SMARTGYM_MONITORING_HEARTBEAT_HOST="127.0.0.1",
                SMARTGYM_MONITORING_HEARTBEAT_PORT=str(replicas.heartbeat_ports[number]),
                SMARTGYM_MONITORING_EQUIPMENT_NETWORKS='{"*": ["127.1.0.0/16"]}',
                SMARTGYM_MONITORING_PING_INTERVAL_S=str(period_s),
                SMARTGYM_MONITORING_SHARDS=str(shards),
                SMARTGYM_MONITORING_REPLICA_ID=Replicas.name(number),
                **{key: value for key, value in extra.items() if value is not None},
            )
            log = scratch / f"monitoring-{number}.log"
            replicas.processes.append(
                start(["serve", "monitoring", "--port", str(replicas.api_ports[number])], env=env, cwd=ROOT, log=log)
            )
        for number, process in enumerate(replicas.processes):
            wait_healthy(replicas.urls[number], process, scratch / f"monitoring-{number}.log", timeout=startup_s)
    except BaseException:
        replicas.stop()
        raise
    return replicas


async def lease_rows(database: str) -> list[tuple[int, str | None, bool]]:
    """Every shard lease: (shard, holder, unexpired by the database's clock)."""
    async with await psycopg.AsyncConnection.connect(database.replace("+psycopg", "")) as connection:
        cursor = await connection.execute("SELECT shard, holder, expires_at > now() FROM shard_leases ORDER BY shard")
        rows = await cursor.fetchall()
    return [(row[0], row[1], bool(row[2])) for row in rows]


async def wait_for_takeover(database: str, dead: str, *, limit_s: float) -> float | None:
    """Seconds until every lease is live and held by a replica other than ``dead``
    (counted from the call), or None if that did not happen within ``limit_s``."""
    began = time.monotonic()
    while time.monotonic() - began < limit_s:
        rows = await lease_rows(database)
        if rows and all(live and holder not in (None, dead) for _, holder, live in rows):
            return time.monotonic() - began
        await asyncio.sleep(0.05)
    return None


def pinged_by(
    pings: Mapping[str, Iterable[tuple[float, str] | list[object]]], since: float, until: float
) -> dict[str, set[str]]:
    """Which replicas pinged each device in [since, until) (wall clock), from each
    device's (time, User-Agent) entries; devices nobody pinged are absent."""
    agents: dict[str, set[str]] = defaultdict(set)
    for device_id, entries in pings.items():
        for at, agent in entries:
            if since <= float(at) < until:  # type: ignore[arg-type]
                agents[device_id].add(str(agent).rsplit("/", 1)[-1])
    return dict(agents)
