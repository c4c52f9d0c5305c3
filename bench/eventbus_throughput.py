"""Event bus end to end on local RabbitMQ + PostgreSQL: outbox → relay (confirms) →
quorum queue → idempotent consumer (inbox + effect in one transaction).

Phases, each with its own consumer process (so producer and consumer use both cores):
  bare       aiormq alone: a publisher with confirms (persistent, mandatory) and a consumer
             acking every message, on a quorum queue declared like the bus's own: the
             ceiling this broker and client library give on this machine
  bus only   publish_many with confirms → the bus's consumer → no-op handler (no database)
  outbox     N events written in business transactions of 100, of 10, then of 1 (what a
             request-driven service does), as fast as possible, through the relay to the
             idempotent consumer (inbox + effect in one transaction)
  latency    a paced stream of transactions of 10 at half the measured maximum for
             transactions of 10 (or --rate), for commit→consumed latency, with the time
             of every stage (commit, relay round, confirm, mark, received, inbox commit)

    python bench/eventbus_throughput.py [--events 20000] [--single-events 5000] [--rate R] [--seconds 10]
                                        [--private-broker]
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
from array import array
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from the repo root

import aiormq

from bench._broker import PrivateBroker
from bench._common import (
    ROOT,
    emit,
    ensure_services,
    machine,
    progress,
    run_on_service_loop,
    spread_line,
    summary,
    table,
)
from common.collector import settle_garbage_collector
from common.db import Database
from common.events.bus import Subscriptions
from common.events.consumer import ServiceConsumer
from common.events.envelope import OutgoingMessage
from common.events.inbox import bind_idempotent
from common.events.outbox import OutboxRelay, UnitOfWork
from common.events.rabbitmq import QUORUM_DEAD_LETTER_ARGS, RabbitMQBus
from common.observability import Metrics
from tests.support.amqp import delete_namespace
from tests.support.infra import PG_ADMIN_URL, RABBITMQ_URL, PostgresDatabases

# The shared node, or (--private-broker) a node of this run's own: the shared one carries
# other clients' traffic and is restarted by their tests.
BROKER = [RABBITMQ_URL]
DUMP_STAGES: list[str | None] = [None]
from tests.support.ledger import CATALOG, TABLES, EntryRecorded, create_schema, effect_counts, record_effect


class _Cpu:
    value = 0.0


cpu_used = _Cpu()


async def wait_timing_cpu(done: asyncio.Event, timeout: float) -> None:
    """Wait for the last event; CPU seconds this consumer process spent from the first
    delivery on (idle waiting before it costs nothing) go to ``cpu_used``."""
    started = time.process_time()
    await asyncio.wait_for(done.wait(), timeout=timeout)
    cpu_used.value = time.process_time() - started


class _StampedQueue(asyncio.Queue):
    """The consumer's local queue of deliveries, noting when each arrived from the broker."""

    def __init__(self, received: dict[str, float]) -> None:
        super().__init__()
        self.received = received

    def put_nowait(self, item) -> None:
        self.received[item.message.header.properties.message_id] = time.time()
        super().put_nowait(item)


class _StampedConsumer(ServiceConsumer):
    def __init__(self, bus: RabbitMQBus, subscriptions: Subscriptions, received: dict[str, float]) -> None:
        super().__init__(bus, subscriptions)
        self._ready = _StampedQueue(received)


async def consume(args: argparse.Namespace) -> None:
    """Consumer process: report latencies once ``--expect`` distinct events were applied,
    with each event's stage times (received from the broker, handed to the handler,
    committed)."""
    metrics = Metrics()
    bus = RabbitMQBus(BROKER[0], catalog=CATALOG, metrics=metrics, namespace=args.ns, prefetch=args.prefetch)
    await bus.start()
    latencies_ms: list[float] = []
    # The bookkeeping holds no objects the garbage collector tracks (ints, strings,
    # tuples of floats): a growing pile of them would make the collector's pauses, and
    # so the latencies, the benchmark's own.
    seen: set[int] = set()
    done = asyncio.Event()
    transactions = [0]  # how many consumer transactions applied the events
    received: dict[str, float] = {}
    stages: dict[str, tuple[float, float, float]] = {}  # event id -> received, handed, committed

    def record(events, handed: float) -> None:
        transactions[0] += 1
        now = time.time()
        for event in events:
            latencies_ms.append((now - event.occurred_at.timestamp()) * 1000)
            seen.add(event.event_id.int)
            key = str(event.event_id)
            stages[key] = (received.get(key, handed), handed, now)
        if len(seen) >= args.expect:
            done.set()

    def timed_one(apply):
        async def handler(event: EntryRecorded) -> None:
            handed = time.time()
            await apply(event)
            record([event], handed)

        return handler

    def timed_batch(apply):
        async def handler(events) -> None:
            handed = time.time()
            await apply(events)
            record(events, handed)

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
    # bus.subscribe, with a consumer that notes arrival times.
    assert bus.connection is not None
    stamped = _StampedConsumer(bus, bound, received)
    await stamped.start(bus.connection)
    bus._consumers[bound.service] = stamped
    settle_garbage_collector()  # as ServiceKernel.start does
    print("ready", flush=True)
    await wait_timing_cpu(done, args.timeout)
    finished = time.time()
    report = {
        "stages": stages,
        "cpu_s": cpu_used.value,
        "latencies_ms": latencies_ms,
        "distinct": len(seen),
        "deliveries": len(latencies_ms),
        "transactions": transactions[0],
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


async def forget_namespace(ns: str) -> None:
    """Delete a phase's queues and exchanges on the shared node; a private node goes away
    whole at the end (and the shared node's queue listing says nothing about it)."""
    if BROKER[0] == RABBITMQ_URL:
        await delete_namespace(BROKER[0], ns)


BARE_QUEUE_ARGS = {**QUORUM_DEAD_LETTER_ARGS, "x-delivery-limit": 20}


async def bare_declare(channel: aiormq.abc.AbstractChannel, ns: str) -> None:
    await channel.exchange_declare(f"{ns}.events", exchange_type="topic", durable=True)
    await channel.queue_declare(f"{ns}.bare", durable=True, arguments=BARE_QUEUE_ARGS)
    await channel.queue_bind(f"{ns}.bare", f"{ns}.events", routing_key="#")


async def bare_consume(args: argparse.Namespace) -> None:
    """aiormq alone: count distinct message ids, ack each message after it is counted."""
    connection = await aiormq.connect(BROKER[0])
    channel = await connection.channel()
    await bare_declare(channel, args.ns)
    await channel.basic_qos(prefetch_count=args.prefetch)
    seen: set[str | None] = set()
    latencies_ms: list[float] = []
    done = asyncio.Event()

    async def deliver(message: aiormq.abc.DeliveredMessage) -> None:
        seen.add(message.header.properties.message_id)
        latencies_ms.append((time.time() - float(message.header.properties.correlation_id or 0)) * 1000)
        assert isinstance(message.delivery, aiormq.spec.Basic.Deliver)
        assert message.delivery.delivery_tag is not None
        await channel.basic_ack(message.delivery.delivery_tag)
        if len(seen) >= args.expect:
            done.set()

    await channel.basic_consume(f"{args.ns}.bare", deliver)
    print("ready", flush=True)
    await wait_timing_cpu(done, args.timeout)
    finished = time.time()
    await connection.close()
    report = {
        "latencies_ms": latencies_ms,
        "distinct": len(seen),
        "deliveries": len(latencies_ms),
        "cpu_s": cpu_used.value,
    }
    print(json.dumps({**report, "last_consumed_at": finished}), flush=True)


async def bare(count: int, prefetch: int) -> dict:
    ns = f"bench{uuid.uuid4().hex[:8]}"
    connection = await aiormq.connect(BROKER[0])
    # The concrete channel: its basic_publish takes wait=False (pipelined publishes).
    channel = cast(aiormq.Channel, await connection.channel(publisher_confirms=True))
    await bare_declare(channel, ns)
    consumer = start_consumer(ns, count, None, role="bare-consume", prefetch=prefetch)
    bodies = [OutgoingMessage.of(EntryRecorded(seq=n)) for n in range(count)]
    started, cpu_started = time.time(), time.process_time()
    for first in range(0, count, 500):
        confirmations = [
            channel.basic_publish(
                message.body,
                exchange=f"{ns}.events",
                routing_key=message.routing_key,
                properties=aiormq.spec.Basic.Properties(
                    content_type="application/json",
                    delivery_mode=2,
                    message_id=str(message.event_id),
                    correlation_id=repr(time.time()),  # the send time, for the consumer's latency
                ),
                mandatory=True,
                wait=False,
            )
            for message in bodies[first : first + 500]
        ]
        for confirmation in await asyncio.gather(*confirmations):
            assert isinstance(confirmation, aiormq.spec.Basic.Ack), confirmation
    producer_cpu = time.process_time() - cpu_started
    await connection.close()
    report = await asyncio.to_thread(finish_consumer, consumer)
    report["producer_cpu_s"] = producer_cpu
    with contextlib.suppress(Exception):
        cleanup = await aiormq.connect(BROKER[0])
        cleanup_channel = await cleanup.channel()
        await cleanup_channel.queue_delete(f"{ns}.bare")
        await cleanup_channel.exchange_delete(f"{ns}.events")
        await cleanup.close()
    report["events_per_s"] = count / (report["last_consumed_at"] - started)
    return report


def start_consumer(
    ns: str, expect: int, db: str | None, *, role: str = "consume", prefetch: int | None = None
) -> subprocess.Popen[str]:
    args = [sys.executable, __file__, "--role", role, "--ns", ns, "--expect", str(expect), "--broker-url", BROKER[0]]
    if prefetch is not None:
        args += ["--prefetch", str(prefetch)]
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
    bus = RabbitMQBus(BROKER[0], catalog=CATALOG, metrics=Metrics(), namespace=ns)
    await bus.start()
    started, cpu_started = time.time(), time.process_time()
    for first in range(0, count, 500):
        await bus.publish_many(
            [OutgoingMessage.of(EntryRecorded(seq=n)) for n in range(first, min(first + 500, count))]
        )
    producer_cpu = time.process_time() - cpu_started
    await bus.close()
    report = await asyncio.to_thread(finish_consumer, consumer)
    report["producer_cpu_s"] = producer_cpu
    await forget_namespace(ns)
    report["events_per_s"] = count / (report["last_consumed_at"] - started)
    return report


# Producer-side stage times of each event, in this order (seconds since the epoch).
_CREATED, _COMMITTED, _ROUND, _HANDED, _CONFIRMED, _MARKED = range(6)


def _no_stamps() -> array[float]:
    # An array, not a list: the collector does not track it (see consume()).
    return array("d", bytes(6 * 8))


class _StampedBus(RabbitMQBus):
    """The bus, noting per event when the relay handed it over and when it was confirmed."""

    def __init__(self, *args, stamps: dict[str, array[float]], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.stamps = stamps
        self.round_started: dict[object, float] = {}  # relay round task -> its start
        self.round_events: dict[object, list[str]] = {}  # relay round task -> what it published

    async def publish_many(self, messages: Sequence[OutgoingMessage]) -> None:
        handed = time.time()
        await super().publish_many(messages)
        confirmed = time.time()
        task = asyncio.current_task()
        started = self.round_started.get(task, handed)
        keys = self.round_events.setdefault(task, [])
        for message in messages:
            key = str(message.event_id)
            stamp = self.stamps.setdefault(key, _no_stamps())
            stamp[_ROUND], stamp[_HANDED], stamp[_CONFIRMED] = started, handed, confirmed
            keys.append(key)


class _StampedRelay(OutboxRelay):
    """The relay, noting when each round started and when it committed its marks."""

    async def relay_once(self, *, claimed: asyncio.Future[int] | None = None) -> int:
        bus = self._bus
        assert isinstance(bus, _StampedBus)
        task = asyncio.current_task()
        bus.round_started[task] = time.time()
        try:
            return await super().relay_once(claimed=claimed)
        finally:
            marked = time.time()
            bus.round_started.pop(task, None)
            for key in bus.round_events.pop(task, []):
                bus.stamps[key][_MARKED] = marked


async def with_outbox(pg: PostgresDatabases, count: int, *, rate: float | None, batch: int) -> dict:
    ns = f"bench{uuid.uuid4().hex[:8]}"
    producer_url, consumer_url = pg.create("bench_producer"), pg.create("bench_consumer")
    create_schema(producer_url)
    create_schema(consumer_url)
    consumer = start_consumer(ns, count, consumer_url)
    metrics = Metrics()
    stamps: dict[str, array[float]] = {}
    bus = _StampedBus(BROKER[0], catalog=CATALOG, metrics=metrics, namespace=ns, stamps=stamps)
    await bus.start()
    producer = Database(producer_url)
    relay = _StampedRelay(
        service="ledger",
        database=producer,
        tables=TABLES,
        bus=bus,
        metrics=metrics,
        batch_size=500,
        poll_interval_s=0.2,
    )
    relay.start()
    settle_garbage_collector()  # as ServiceKernel.start does
    started, cpu_started = time.time(), time.process_time()
    interval = batch / rate if rate else 0.0
    next_at = time.monotonic()
    late_ms: list[float] = []  # paced: how late each transaction started against its schedule
    for first in range(0, count, batch):
        if interval:
            late_ms.append((time.monotonic() - next_at) * 1000)
        events = [EntryRecorded(seq=seq) for seq in range(first, min(first + batch, count))]
        async with UnitOfWork(producer, TABLES, on_commit=relay.wake) as uow:
            for event in events:
                uow.emit(event)
        committed = time.time()
        for event in events:
            stamp = stamps.setdefault(str(event.event_id), _no_stamps())
            stamp[_CREATED], stamp[_COMMITTED] = event.occurred_at.timestamp(), committed
        if interval:
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
    produced = time.time()
    report = await asyncio.to_thread(finish_consumer, consumer)
    consumed = report.pop("stages")
    report["stage_ms"] = stage_summary(stamps, consumed)
    if DUMP_STAGES[0] and rate:
        # Every event's stage times, for a timeline of where a tail came from.
        Path(DUMP_STAGES[0]).write_text(
            json.dumps({key: [*stamp, *consumed.get(key, [])] for key, stamp in stamps.items()})
        )
    report["schedule_late_ms"] = summary(late_ms) if late_ms else None
    # The business transactions and the relay: this process, until the last event landed.
    report["producer_cpu_s"] = time.process_time() - cpu_started
    await relay.stop()
    await bus.close()
    await producer.dispose()
    await forget_namespace(ns)
    report["events_per_s"] = count / (report["last_consumed_at"] - started)
    report["produce_s"] = produced - started
    return report


STAGES = (
    # name, producer-side start, then either a producer-side end or a consumer-side one
    ("business txn (event made → commit)", _CREATED, ("p", _COMMITTED)),
    ("commit → relay round starts", _COMMITTED, ("p", _ROUND)),
    ("round start → rows claimed, publish", _ROUND, ("p", _HANDED)),
    ("publish → confirmed", _HANDED, ("p", _CONFIRMED)),
    ("confirmed → relay marks committed", _CONFIRMED, ("p", _MARKED)),
    ("publish → consumer received", _HANDED, ("c", 0)),
    ("received → handed to the batch", None, ("c", 1)),
    ("batch → inbox committed", None, ("c", 2)),
    ("commit → inbox committed (end to end)", _COMMITTED, ("c", 2)),
)


def stage_summary(
    produced: dict[str, array[float]], consumed: dict[str, Sequence[float]]
) -> dict[str, dict[str, float]]:
    """Per stage, p50/p95/p99 in ms over the events both sides saw (same clock: one machine)."""
    out: dict[str, dict[str, float]] = {}
    for name, start, (side, end) in STAGES:
        values = []
        for key, c in consumed.items():
            p = produced.get(key)
            if p is None or not all(p):
                continue
            begin = c[end - 1] if start is None else p[start]
            finish = p[end] if side == "p" else c[end]
            values.append((finish - begin) * 1000)
        out[name] = summary(values)
    return out


def print_stages(name: str, report: dict) -> None:
    table(
        f"Where the time goes: {name}",
        ["stage", "n", "p50 ms", "p95 ms", "p99 ms", "max ms"],
        [
            [
                stage,
                spread["n"],
                f"{spread['p50']:.1f}",
                f"{spread['p95']:.1f}",
                f"{spread['p99']:.1f}" if spread["n"] >= 100 else "n<100",
                f"{spread['max']:.1f}",
            ]
            for stage, spread in report["stage_ms"].items()
        ],
    )
    late = report["schedule_late_ms"]
    if late:
        print(
            f"paced producer behind its schedule: p50 {late['p50']:.1f} ms, p99 {late['p99']:.1f} ms, "
            f"max {late['max']:.1f} ms (n={late['n']} transactions)"
        )


async def one_phase(pg: PostgresDatabases, args: argparse.Namespace) -> None:
    """One phase on its own (``--only``), for profiling or diagnosing it: no ratios."""
    if args.only == "paced" and not args.rate:
        raise SystemExit("--only paced needs --rate")
    progress(f"phase {args.only} only")
    count = {"single": args.single_events, "paced": int((args.rate or 0) * args.seconds)}.get(args.only, args.events)
    if args.only == "bare":
        report = await bare(count, args.prefetch)
    elif args.only == "bus":
        report = await baseline(count)
    else:
        batch = {"burst": 100, "single": 1, "paced": args.paced_batch}[args.only]
        report = await with_outbox(pg, count, rate=args.rate if args.only == "paced" else None, batch=batch)
        print_stages(f"{args.only}, transactions of {batch}", report)
    lat = summary(report["latencies_ms"])
    print(
        f"\n{args.only}: {report['distinct']}/{count} distinct, {report['events_per_s']:.0f} events/s, "
        f"latency {spread_line(lat)}, producer CPU {report['producer_cpu_s'] / count * 1e6:.0f} "
        f"µs/event, consumer CPU {report['cpu_s'] / count * 1e6:.0f} µs/event, "
        f"load {os.getloadavg()[0]:.1f}"
    )


async def main(args: argparse.Namespace) -> None:
    ensure_services()
    pg = PostgresDatabases(PG_ADMIN_URL)
    broker = None
    if args.private_broker:
        progress("starting a private RabbitMQ node")
        broker = await asyncio.to_thread(PrivateBroker().start)
        BROKER[0] = broker.url
    try:
        if args.only:
            await one_phase(pg, args)
            return
        progress("bare aiormq pair")
        naked = await bare(args.events, args.prefetch)
        progress("bus only")
        base = await baseline(args.events)
        progress("outbox, transactions of 100")
        burst = await with_outbox(pg, args.events, rate=None, batch=100)
        progress("outbox, transactions of 10")
        burst10 = await with_outbox(pg, args.events, rate=None, batch=10)
        progress("outbox, transactions of 1")
        single = await with_outbox(pg, args.single_events, rate=None, batch=1)
        # Half the maximum of the paced phase's own transaction size: a transaction of 10
        # costs more per event than one of 100, so half the headline rate is close to
        # the whole capacity for transactions of 10.
        rate = args.rate or round(burst10["events_per_s"] / 2)
        paced_count = int(rate * args.seconds)
        progress(f"outbox paced at {rate:.0f}/s")
        paced = await with_outbox(pg, paced_count, rate=rate, batch=10)
    finally:
        pg.drop_all()
        if broker is not None:
            await asyncio.to_thread(broker.stop)

    phases = (
        ("bare aiormq pair (no bus, no DB)", naked, args.events),
        ("bus only, no DB", base, args.events),
        ("outbox burst (txn of 100)", burst, args.events),
        ("outbox burst (txn of 10)", burst10, args.events),
        ("outbox burst (txn of 1)", single, args.single_events),
        (f"outbox paced {rate:.0f}/s (txn of 10)", paced, paced_count),
    )
    rows = []
    for name, report, expected in phases:
        lat = summary(report["latencies_ms"])
        n = len(report["latencies_ms"])
        # No p99 from fewer than 100 samples.
        p99 = f"{lat['p99']:.1f}" if n >= 100 else "n<100"
        rows.append(
            [
                name,
                f"{report['distinct']}/{expected}",
                n,
                f"{report['events_per_s']:.0f}",
                f"{lat['p50']:.1f}",
                f"{lat['p95']:.1f}",
                p99,
                f"{report['producer_cpu_s'] / expected * 1e6:.0f}",
                f"{report['cpu_s'] / expected * 1e6:.0f}",
                f"{expected / report['transactions']:.0f}" if report.get("transactions") else "-",
                report.get("duplicates_absorbed", 0),
            ]
        )
    table(
        f"Event bus end to end on local RabbitMQ {'+'} PostgreSQL ({machine()}, {datetime.now(UTC):%Y-%m-%d})",
        [
            "phase",
            "distinct/sent",
            "n",
            "events/s",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "producer CPU µs/event",
            "consumer CPU µs/event",
            "events/consumer txn",
            "dupes absorbed",
        ],
        rows,
    )
    for name, report in ((f"outbox paced {rate:.0f}/s (txn of 10)", paced), ("outbox burst (txn of 100)", burst)):
        print_stages(name, report)
    outboxed = ((burst, args.events), (burst10, args.events), (single, args.single_events), (paced, paced_count))
    lost = sum(expected - report["effect_distinct"] for report, expected in outboxed)
    lost += (args.events - naked["distinct"]) + (args.events - base["distinct"])
    duplicated = sum(report["effect_twice"] for report, _ in outboxed)
    paced_lat, burst_lat = summary(paced["latencies_ms"]), summary(burst["latencies_ms"])
    ratio_outbox = burst["events_per_s"] / base["events_per_s"]
    ratio_bus = base["events_per_s"] / naked["events_per_s"]
    print(
        f"\nlatency = event made (just before its business transaction commits) → consumer commit "
        f"(bare: publish → consumed); lost={lost}, "
        f"duplicated effects={duplicated}; outbox (txn 100) / bus only = {ratio_outbox:.2f}; "
        f"bus only / bare aiormq = {ratio_bus:.2f}; load: {os.getloadavg()[0]:.1f}; "
        f"broker: {'private node' if args.private_broker else 'shared node'}"
    )
    if lost or duplicated:
        print("FAILED: events lost or applied twice")
    emit(
        {
            "eventbus_events_per_s": round(burst["events_per_s"]),
            "eventbus_events_per_s_txn_10": round(burst10["events_per_s"]),
            "eventbus_events_per_s_txn_1": round(single["events_per_s"]),
            "eventbus_ratio_to_bus_only": round(ratio_outbox, 3),
            "bus_only_ratio_to_bare_amqp": round(ratio_bus, 3),
            "events_per_s": round(burst["events_per_s"]),
            "p50_ms": round(paced_lat["p50"], 2),
            "p95_ms": round(paced_lat["p95"], 2),
            "p99_ms": round(paced_lat["p99"], 2),
            "paced_n": len(paced["latencies_ms"]),
            "paced_stage_p99_ms": {stage: round(spread["p99"], 1) for stage, spread in paced["stage_ms"].items()},
            "paced_stage_p50_ms": {stage: round(spread["p50"], 1) for stage, spread in paced["stage_ms"].items()},
            "burst_p99_ms": round(burst_lat["p99"], 2),
            "paced_rate_per_s": rate,
            "baseline_events_per_s": round(base["events_per_s"]),
            "bare_amqp_events_per_s": round(naked["events_per_s"]),
            "lost": lost,
            "duplicated_effects": duplicated,
            "events": args.events,
            "load_1min": round(os.getloadavg()[0], 2),
            "private_broker": args.private_broker,
            "consumer_cpu_us_per_event": {
                name: round(report["cpu_s"] / expected * 1e6) for name, report, expected in phases
            },
            # The publisher, or the business transactions and the relay (one process).
            "producer_cpu_us_per_event": {
                name: round(report["producer_cpu_s"] / expected * 1e6) for name, report, expected in phases
            },
        }
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--role", default="main", choices=["main", "consume", "bare-consume"])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--single-events", type=int, default=5_000)
    parser.add_argument("--rate", type=float, default=None, help="paced rate; default half the measured maximum")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--paced-batch", type=int, default=10, help="events per transaction with --only paced")
    parser.add_argument("--ns")
    parser.add_argument("--expect", type=int)
    parser.add_argument("--db")
    parser.add_argument("--prefetch", type=int, default=256)
    parser.add_argument("--timeout", type=float, default=240)
    parser.add_argument("--private-broker", action="store_true", help="a RabbitMQ node of this run's own")
    parser.add_argument("--broker-url", default=RABBITMQ_URL, help=argparse.SUPPRESS)
    parser.add_argument("--dump-stages", help="write every paced event's stage times (JSON) to this file")
    parser.add_argument(
        "--only",
        choices=["bare", "bus", "burst", "single", "paced"],
        help="run one phase alone (paced needs --rate), to profile or diagnose it",
    )
    arguments = parser.parse_args()
    BROKER[0] = arguments.broker_url
    DUMP_STAGES[0] = arguments.dump_stages
    os.chdir(ROOT)
    role = {"consume": consume, "bare-consume": bare_consume, "main": main}[arguments.role]
    # Every role on the services' loop: the bare aiormq pair is held to the loop the bus runs on.
    run_on_service_loop(role(arguments))
