"""The operators' view of the event bus on the real broker: how long the backlog, the
parking-lot listing and an inspect take with a few hundred parked messages, and how long
a replay takes from the operator's request to the service having taken the event.

monitoring's API is called in process (ASGI transport, no gateway); the broker is the
local RabbitMQ; a test consumer parks every event until it is told to take them.

    .venv/bin/python bench/bus_parking.py [--parked 300] [--replays 100]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from the repo root

from bench._common import emit, ensure_services, fail, figure, machine, spread_cells, summary, table
from common.events.bus import Subscriptions
from common.events.envelope import EventCatalog, OutgoingMessage
from common.events.rabbitmq import RabbitMQBus
from common.migrations import upgrade
from common.observability import Metrics
from common.security import Role
from contracts import CATALOG as CONTRACTS
from monitoring.app import create_app
from monitoring.settings import MonitoringSettings
from tests.support import tokens
from tests.support.amqp import delete_namespace
from tests.support.apps import asgi_client
from tests.support.infra import RABBITMQ_URL
from tests.support.ledger import EntryRecorded

SERVICE = "ledger"


def operator() -> dict[str, str]:
    token = tokens.issuer().issue(str(uuid.uuid4()), [Role.OPERATOR], [])
    return {"authorization": f"Bearer {token}"}


async def run(parked_n: int, replays_n: int) -> None:
    namespace = f"bench{uuid.uuid4().hex[:8]}"
    catalog = EventCatalog()
    for event_type in [*CONTRACTS, EntryRecorded]:
        catalog.register(event_type)
    taken: Counter[int] = Counter()
    taken_at: dict[int, float] = {}
    failing = True

    async def handle(event: EntryRecorded) -> None:
        if failing:
            raise RuntimeError("closed for the benchmark")
        taken[event.seq] += 1
        taken_at.setdefault(event.seq, time.perf_counter())

    subscriptions = Subscriptions(SERVICE)
    subscriptions.add_bus_handler(EntryRecorded, handle, name="record")
    bus = RabbitMQBus(RABBITMQ_URL, catalog=catalog, metrics=Metrics(), namespace=namespace, max_attempts=1)
    headers = operator()
    with tempfile.TemporaryDirectory() as scratch:
        settings = MonitoringSettings(
            environment="test",
            data_dir=Path(scratch),
            monitoring_bus_services=(SERVICE,),
            monitoring_heartbeat_host="127.0.0.1",
            monitoring_heartbeat_port=0,
        )
        upgrade("monitoring", settings.database_url("monitoring"))
        await bus.start()
        try:
            await bus.subscribe(subscriptions)
            app = create_app(settings, bus=bus, keys=tokens.key_cache())
            async with asgi_client(app) as client:

                async def parked_now() -> int:
                    answer = await client.get("/v1/bus/backlog", headers=headers)
                    rows = {row["service"]: row for row in answer.json()["services"]}
                    return int(rows[SERVICE]["parked"])

                events = [EntryRecorded(seq=seq) for seq in range(parked_n)]
                for start in range(0, parked_n, 100):
                    await bus.publish_many([OutgoingMessage.of(event) for event in events[start : start + 100]])
                deadline = time.monotonic() + 60
                while await parked_now() < parked_n and time.monotonic() < deadline:
                    await asyncio.sleep(0.1)
                if await parked_now() != parked_n:
                    fail(f"only {await parked_now()} of {parked_n} parked")

                async def timed(method: str, url: str, n: int, **options: object) -> list[float]:
                    spent = []
                    for _ in range(n):
                        started = time.perf_counter()
                        answer = await client.request(method, url, headers=headers, **options)  # type: ignore[arg-type]
                        spent.append((time.perf_counter() - started) * 1000)
                        if answer.status_code != 200:
                            fail(f"{method} {url}: {answer.status_code} {answer.text[:200]}")
                    return spent

                backlog_ms = await timed("GET", "/v1/bus/backlog", 100)
                list_ms = await timed("GET", f"/v1/bus/parked?service={SERVICE}&limit=50", 100)
                deepest = str(events[-1].event_id)
                inspect_ms = await timed("GET", f"/v1/bus/parked/{SERVICE}/{deepest}", 30)

                failing = False
                replay_ms: list[float] = []
                to_taken_ms: list[float] = []
                for event in events[:replays_n]:
                    started = time.perf_counter()
                    answer = await client.post(f"/v1/bus/parked/{SERVICE}/{event.event_id}/replay", headers=headers)
                    replay_ms.append((time.perf_counter() - started) * 1000)
                    if answer.status_code != 200:
                        fail(f"replay {event.seq}: {answer.status_code} {answer.text[:200]}")
                        continue
                    deadline = time.monotonic() + 10
                    while event.seq not in taken_at and time.monotonic() < deadline:
                        await asyncio.sleep(0.001)
                    if event.seq in taken_at:
                        to_taken_ms.append((taken_at[event.seq] - started) * 1000)
                await asyncio.sleep(0.5)  # a repeat would have arrived by now
                repeats = sum(count - 1 for count in taken.values() if count > 1)
                missing = replays_n - len(taken)
                if repeats or missing:
                    fail(f"replayed {replays_n}: {missing} never taken, {repeats} taken twice")
                left = await parked_now()
                if left != parked_n - replays_n:
                    fail(f"{left} still parked, expected {parked_n - replays_n}")
        finally:
            await bus.close()
            await delete_namespace(RABBITMQ_URL, namespace)

    rows = {
        "backlog (1 service + unrouted)": summary(backlog_ms),
        f"list 50 of {parked_n} parked": summary(list_ms),
        f"inspect the deepest of {parked_n}": summary(inspect_ms),
        "replay: request answered": summary(replay_ms),
        "replay: request -> handler took it": summary(to_taken_ms),
    }
    load = os.getloadavg()
    table(
        f"Bus operations on RabbitMQ ({machine()}, load {load[0]:.1f}), ms",
        ["operation", "n", "p50", "p95", "p99"],
        [[name, *spread_cells(spread)] for name, spread in rows.items()],
    )
    emit(
        {
            "parked": parked_n,
            "replays": replays_n,
            "replays_taken_once": replays_n - missing,
            "replay_repeats": repeats,
            "backlog_p50_ms": figure(rows["backlog (1 service + unrouted)"]["p50"]),
            "list_p50_ms": figure(summary(list_ms)["p50"]),
            "list_p95_ms": figure(summary(list_ms)["p95"]),
            "inspect_deepest_p50_ms": figure(summary(inspect_ms)["p50"]),
            "replay_answer_p50_ms": figure(summary(replay_ms)["p50"]),
            "replay_answer_p95_ms": figure(summary(replay_ms)["p95"]),
            "replay_to_taken_p50_ms": figure(summary(to_taken_ms)["p50"]),
            "replay_to_taken_p95_ms": figure(summary(to_taken_ms)["p95"]),
            "replay_to_taken_p99_ms": figure(summary(to_taken_ms)["p99"]),
            "loadavg_1m": round(load[0], 2),
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parked", type=int, default=300)
    parser.add_argument("--replays", type=int, default=100)
    args = parser.parse_args()
    ensure_services()
    asyncio.run(run(args.parked, args.replays))


if __name__ == "__main__":
    main()
