"""Event bus end to end on local RabbitMQ + PostgreSQL: outbox → relay (confirms) →
quorum queue → idempotent consumer (inbox + effect in one transaction).

Phases, each with its own consumer process (so producer and consumer use both cores):
  baseline   bus only: publish_many with confirms → no-op handler (no database)
  throughput N events written in business transactions of 100 as fast as possible
             (the headline: a batch job's shape)
  single     events written one per business transaction as fast as possible (what a
             request-driven service does: one request, one commit, one event)
  latency    a paced stream (default 500 events/s) for commit→consumed latency

Every figure is quoted with its transaction size. Each phase counts the distinct events
whose effect was applied; a shortfall is a failure (non-zero exit, ``failures`` in JSON).

    python bench/eventbus_throughput.py [--events 20000] [--single-events 5000] [--rate 500] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from the repo root

from bench._common import ROOT, cell, check_count, emit, ensure_services, fail, machine, summary, table
from common.db import Database
from common.events.bus import Subscriptions
from common.events.envelope import OutgoingMessage
from common.events.outbox import OutboxRelay, UnitOfWork, bind_idempotent
from common.events.rabbitmq import RabbitMQBus
from common.observability import Metrics
from tests.support.amqp import delete_namespace
from tests.support.infra import PG_ADMIN_URL, RABBITMQ_URL, PostgresDatabases
from tests.support.ledger import CATALOG, TABLES, EntryRecorded, create_schema, effect_counts, record_effect

#: The broker every phase uses: the shared node unless --private-broker.
AMQP = [RABBITMQ_URL]


async def consume(args: argparse.Namespace) -> None:
    """Consumer process: report latencies once ``--expect`` distinct events were applied."""
    metrics = Metrics()
    bus = RabbitMQBus(args.amqp, catalog=CATALOG, metrics=metrics, namespace=args.ns, prefetch=args.prefetch)
    await bus.start()
    latencies_ms: list[float] = []
    seen: set[uuid.UUID] = set()
    done = asyncio.Event()

    def record(events) -> None:
        now = time.time()
        for event in events:
            latencies_ms.append((now - event.occurred_at.timestamp()) * 1000)
            seen.add(event.event_id)
        if len(seen) >= args.expect:
            done.set()

    def timed_one(apply):
        async def handler(event: EntryRecorded) -> None:
            await apply(event)
            record([event])

        return handler

    def timed_batch(apply):
        async def handler(events) -> None:
            await apply(events)
            record(events)

        return handler

    declared = Subscriptions("ledger")
    database = None
    if args.db:
        database = Database(args.db, pool_size=20)
        declared.add(EntryRecorded, record_effect, name="record_effect")
        bound = bind_idempotent(declared, database, TABLES, metrics, on_commit=lambda: None)
    else:

        async def noop(event: EntryRecorded) -> None:
            return None

        bound = Subscriptions("ledger")
        bound.add_bus_handler(EntryRecorded, noop, name="noop")
    for item in bound.items:
        object.__setattr__(item, "handler", timed_one(item.handler))
    if bound.batch_handler is not None:
        bound.batch_handler = timed_batch(bound.batch_handler)
    await bus.subscribe(bound)
    print("ready", flush=True)
    # On a timeout the shortfall is reported (distinct < expected) and failed by the caller.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(done.wait(), timeout=args.timeout)
    finished = time.time()
    report = {
        "latencies_ms": latencies_ms,
        "distinct": len(seen),
        "deliveries": len(latencies_ms),
        "duplicates_absorbed": int(metrics.duplicates.labels("ledger.record_effect")._value.get()),
        "last_consumed_at": finished,
    }
    if database is not None:
        async with database.sessions() as session:
            rows, distinct, twice = await effect_counts(session)
        report.update(effect_rows=rows, effect_distinct=distinct, effect_twice=twice)
        await database.dispose()
    await bus.close()
    print(json.dumps(report), flush=True)


def start_consumer(ns: str, expect: int, db: str | None) -> subprocess.Popen[str]:
    args = [sys.executable, __file__, "--role", "consume", "--ns", ns, "--expect", str(expect), "--amqp", AMQP[0]]
    if db:
        args += ["--db", db]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    if line != "ready":
        raise RuntimeError(f"consumer did not start: {line!r}")
    return process


def finish_consumer(process: subprocess.Popen[str]) -> dict:
    out, _ = process.communicate(timeout=300)
    return json.loads(out.strip().splitlines()[-1])


async def baseline(count: int) -> dict:
    ns = f"bench{uuid.uuid4().hex[:8]}"
    consumer = start_consumer(ns, count, None)
    bus = RabbitMQBus(AMQP[0], catalog=CATALOG, metrics=Metrics(), namespace=ns)
    await bus.start()
    started = time.time()
    for first in range(0, count, 500):
        await bus.publish_many(
            [OutgoingMessage.of(EntryRecorded(seq=n)) for n in range(first, min(first + 500, count))]
        )
    await bus.close()
    report = await asyncio.to_thread(finish_consumer, consumer)
    await delete_namespace(AMQP[0], ns)
    report["events_per_s"] = count / (report["last_consumed_at"] - started)
    return report


async def with_outbox(pg: PostgresDatabases, count: int, *, rate: float | None, batch: int) -> dict:
    ns = f"bench{uuid.uuid4().hex[:8]}"
    producer_url, consumer_url = pg.create("bench_producer"), pg.create("bench_consumer")
    create_schema(producer_url)
    create_schema(consumer_url)
    consumer = start_consumer(ns, count, consumer_url)
    metrics = Metrics()
    bus = RabbitMQBus(AMQP[0], catalog=CATALOG, metrics=metrics, namespace=ns)
    await bus.start()
    producer = Database(producer_url)
    relay = OutboxRelay(
        service="ledger",
        database=producer,
        tables=TABLES,
        bus=bus,
        metrics=metrics,
        batch_size=500,
        poll_interval_s=0.2,
    )
    relay.start()
    started = time.time()
    interval = batch / rate if rate else 0.0
    next_at = time.monotonic()
    for first in range(0, count, batch):
        async with UnitOfWork(producer, TABLES, on_commit=relay.wake) as uow:
            for seq in range(first, min(first + batch, count)):
                uow.emit(EntryRecorded(seq=seq))
        if interval:
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
    produced = time.time()
    report = await asyncio.to_thread(finish_consumer, consumer)
    await relay.stop()
    await bus.close()
    await producer.dispose()
    await delete_namespace(AMQP[0], ns)
    report["events_per_s"] = count / (report["last_consumed_at"] - started)
    report["produce_s"] = produced - started
    return report


async def main(args: argparse.Namespace) -> None:
    ensure_services()
    pg = PostgresDatabases(PG_ADMIN_URL)
    broker = None
    if args.private_broker:
        # The shared node also serves every other client on the machine (and tests that
        # restart it): a node of our own makes the run repeatable.
        from bench._broker import PrivateBroker

        broker = await asyncio.to_thread(PrivateBroker().start)
        AMQP[0] = broker.url
    try:
        base = await baseline(args.events)
        burst = await with_outbox(pg, args.events, rate=None, batch=100)
        single = await with_outbox(pg, args.single_events, rate=None, batch=1)
        paced_count = int(args.rate * args.seconds)
        paced = await with_outbox(pg, paced_count, rate=args.rate, batch=10)
    finally:
        pg.drop_all()
        if broker is not None:
            await asyncio.to_thread(broker.stop)

    base_lat, burst_lat, single_lat, paced_lat = (summary(r["latencies_ms"]) for r in (base, burst, single, paced))
    check_count("bus only", expected=args.events, distinct=base["distinct"])
    check_count("outbox, txn of 100", expected=args.events, distinct=burst["effect_distinct"])
    check_count("outbox, txn of 1", expected=args.single_events, distinct=single["effect_distinct"])
    check_count("outbox paced", expected=paced_count, distinct=paced["effect_distinct"])
    rows = []
    for name, report, lat in (
        ("baseline: bus only, no DB", base, base_lat),
        ("outbox burst (txn of 100)", burst, burst_lat),
        ("outbox burst (txn of 1)", single, single_lat),
        (f"outbox paced {args.rate:.0f}/s (txn of 10)", paced, paced_lat),
    ):
        rows.append(
            [
                name,
                len(report["latencies_ms"]),
                report.get("effect_distinct", report["distinct"]),
                f"{report['events_per_s']:.0f}",
                cell(lat, "p50", 1),
                cell(lat, "p95", 1),
                cell(lat, "p99", 1),
                report.get("duplicates_absorbed", 0),
            ]
        )
    table(
        f"Event bus end to end on local RabbitMQ {'+'} PostgreSQL ({machine()}, {datetime.now(UTC):%Y-%m-%d})",
        ["phase", "n (deliveries)", "distinct applied", "events/s", "p50 ms", "p95 ms", "p99 ms", "dupes absorbed"],
        rows,
    )
    lost = (
        (args.events - burst["effect_distinct"])
        + (args.single_events - single["effect_distinct"])
        + (paced_count - paced["effect_distinct"])
    )
    duplicated = burst["effect_twice"] + single["effect_twice"] + paced["effect_twice"]
    if duplicated:
        fail(f"{duplicated} effects applied twice")
    print(
        f"\nlatency = business commit → consumer commit; lost={lost}, duplicated effects={duplicated};"
        f" outbox throughput / bus-only = {burst['events_per_s'] / base['events_per_s']:.2f} (txn of 100),"
        f" {single['events_per_s'] / base['events_per_s']:.2f} (txn of 1)"
    )
    emit(
        {
            # Each throughput is quoted with its transaction size (events per commit).
            "events_per_s": round(burst["events_per_s"]),
            "events_per_s_txn_size": 100,
            "events_per_s_txn_of_1": round(single["events_per_s"]),
            "txn_of_1_events": args.single_events,
            "txn_of_1_p99_ms": round(single_lat["p99"], 2),
            "eventbus_ratio_to_bus_only": round(burst["events_per_s"] / base["events_per_s"], 3),
            "eventbus_ratio_to_bus_only_txn_of_1": round(single["events_per_s"] / base["events_per_s"], 3),
            "paced_txn_size": 10,
            "paced_n": int(paced_lat["n"]),
            "p50_ms": round(paced_lat["p50"], 2),
            "p95_ms": round(paced_lat["p95"], 2),
            "p99_ms": round(paced_lat["p99"], 2),
            "burst_p99_ms": round(burst_lat["p99"], 2),
            "paced_rate_per_s": args.rate,
            "baseline_events_per_s": round(base["events_per_s"]),
            "baseline_p99_ms": round(base_lat["p99"], 2),
            "lost": lost,
            "duplicated_effects": duplicated,
            "events": args.events,
        }
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--role", default="main", choices=["main", "consume"])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--single-events", type=int, default=5_000, help="events of the one-per-transaction phase")
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--ns")
    parser.add_argument("--amqp", default=RABBITMQ_URL)
    parser.add_argument(
        "--private-broker", action="store_true", help="run on a RabbitMQ node of its own instead of the shared one"
    )
    parser.add_argument("--expect", type=int)
    parser.add_argument("--db")
    parser.add_argument("--prefetch", type=int, default=256)
    parser.add_argument("--timeout", type=float, default=240)
    arguments = parser.parse_args()
    os.chdir(ROOT)
    asyncio.run(consume(arguments) if arguments.role == "consume" else main(arguments))
