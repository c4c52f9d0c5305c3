"""The helpers' task loop under load: submit → verdict, the owner's review queue at
100,000 tasks, and reward-ledger credits with redelivered and repeated decisions.

helper and branch_owner each run as their own process (``smartgym serve``, PostgreSQL,
RabbitMQ). This process submits tasks over HTTP and listens on the broker for their
verdicts; fills branch_owner's queue table with 100,000 judged tasks and pages the
busiest owner's first page; publishes TaskConfirmed events (a fifth of them twice, some
as a second decision about the same task) and counts ledger entries. Baselines in the
same run: the judge's image measurements alone, in this process; a ``/healthz`` round
trip to each service (framework and loopback floor).

    python bench/helper_task_loop.py [--tasks 110] [--queue-rows 100000] [--credits 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import random
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
import psycopg

from bench._common import emit, ensure_services, machine, progress, shared_broker_namespace, summary, table
from common.events.bus import Subscriptions
from common.events.envelope import OutgoingMessage
from common.events.rabbitmq import RabbitMQBus
from common.migrations import upgrade
from common.observability import Metrics
from common.security import Role
from contracts import CATALOG, TaskConfirmed, TaskJudgedV2
from helper.checks import measure
from helper.photos import clean
from tests.helper.images import scene
from tests.support import tokens
from tests.support.apps import free_port, serving
from tests.support.infra import PG_ADMIN_URL, RABBITMQ_URL, PostgresDatabases
from tests.support.processes import clean_env, start, stop, wait_healthy

ROOT = Path(__file__).resolve().parents[1]
BRANCH = "bench-gangnam"
BRANCHES = 200  # the queue's 100,000 tasks spread over this many branches


def scalar(connection: psycopg.Connection, sql: str, *params: object) -> int:
    row = connection.execute(sql, params or None).fetchone()
    assert row is not None
    return int(row[0])


def libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def photos(count: int) -> list[bytes]:
    out = []
    for n in range(count):
        image = scene(10_000 + n, size=(1280, 960))  # a phone photo's size, roughly
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=85)
        out.append(buffer.getvalue())
    return out


async def healthz_ms(url: str, n: int) -> list[float]:
    async with httpx.AsyncClient() as client:
        times = []
        for _ in range(n):
            began = time.perf_counter()
            (await client.get(f"{url}/healthz")).raise_for_status()
            times.append((time.perf_counter() - began) * 1000)
        return times


def fill_queue(database: str, rows: int, owner_branch: str) -> None:
    """``rows`` judged tasks, 0.5 % of them in the owner's branch, most already decided."""
    now = datetime.now(UTC)
    photo = '[{"key": "k", "sha256": "' + "0" * 64 + '", "content_type": "image/jpeg"}]'
    with psycopg.connect(libpq(database)) as connection, connection.cursor() as cursor:
        with cursor.copy(
            "COPY review_queue (task_id, branch_id, helper_id, task_type, title, reward_krw, photos, submitted_at,"
            " judged_at, outcome, confidence, reasons, model_version, status) FROM STDIN"
        ) as copy:
            for n in range(rows):
                branch = owner_branch if n % BRANCHES == 0 else f"branch-{n % BRANCHES:03d}"
                judged = now - timedelta(minutes=n % 50_000)
                status = "pending" if n % 4 == 0 else ("approved" if n % 4 != 3 else "rejected")
                copy.write_row(
                    (
                        uuid.uuid4(),
                        branch,
                        uuid.uuid4(),
                        "wash",
                        "Wash towels",
                        3000,
                        photo,
                        judged - timedelta(seconds=3),
                        judged,
                        "needs_review",
                        0.0,
                        '[{"code": "no_model", "message": "no trained model yet"}]',
                        "none",
                        status,
                    )
                )
        connection.execute("ANALYZE review_queue")


async def run(args: argparse.Namespace) -> None:
    ensure_services()
    load_before = f"{os.getloadavg()[0]:.1f}"
    scratch = Path(tempfile.mkdtemp(prefix="bench-helper-"))
    databases = PostgresDatabases(PG_ADMIN_URL)
    helper_db, owner_db = databases.create("bench_helper"), databases.create("bench_branch_owner")
    upgrade("helper", helper_db)
    upgrade("branch_owner", owner_db)
    namespace = shared_broker_namespace()
    helper_port, owner_port = free_port(), free_port()
    helper_url, owner_url = f"http://127.0.0.1:{helper_port}", f"http://127.0.0.1:{owner_port}"
    processes = []
    listener = RabbitMQBus(RABBITMQ_URL, catalog=CATALOG, metrics=Metrics(), namespace=namespace)
    publisher = RabbitMQBus(RABBITMQ_URL, catalog=CATALOG, metrics=Metrics(), namespace=namespace)
    owner_id, helper_id = uuid.uuid4(), uuid.uuid4()
    owner, helper = (
        tokens.bearer(owner_id, [Role.BRANCH_OWNER], [BRANCH]),
        tokens.bearer(helper_id, [Role.HELPER]),
    )
    progress("making photos")
    images = photos(args.tasks)
    cleaned = [clean(data, max_bytes=4 << 20, max_pixels=40_000_000) for data in images[:50]]
    measure_ms = []
    for photo in cleaned:
        began = time.perf_counter()
        measure(0, photo.data, phash=photo.phash, sha256=photo.sha256, captured_at=None)
        measure_ms.append((time.perf_counter() - began) * 1000)
    intake_ms = []
    for data in images[:50]:
        began = time.perf_counter()
        clean(data, max_bytes=4 << 20, max_pixels=40_000_000)
        intake_ms.append((time.perf_counter() - began) * 1000)
    try:
        async with serving(tokens.jwks_app()) as auth_url:
            common = {
                "SMARTGYM_BROKER_URL": RABBITMQ_URL,
                "SMARTGYM_BUS_NAMESPACE": namespace,
                "SMARTGYM_AUTH_URL": auth_url,
                "SMARTGYM_DATA_DIR": str(scratch),
                "SMARTGYM_LOG_LEVEL": "WARNING",
                "SMARTGYM_OUTBOX_POLL_INTERVAL_S": "0.2",
            }
            for service, port, database in (("helper", helper_port, helper_db), ("branch_owner", owner_port, owner_db)):
                env = clean_env(**common, **{f"SMARTGYM_{service.upper()}_DATABASE_URL": database})
                log = scratch / f"{service}.log"
                process = start(
                    ["serve", service, "--host", "127.0.0.1", "--port", str(port)], env=env, cwd=ROOT, log=log
                )
                processes.append(process)
                wait_healthy(f"http://127.0.0.1:{port}", process, log)
            judged_at: dict[str, float] = {}

            async def on_judged(event: TaskJudgedV2) -> None:
                judged_at.setdefault(str(event.task_id), time.perf_counter())

            subs = Subscriptions("bench_listener")
            subs.add_bus_handler(TaskJudgedV2, on_judged, name="judged")
            await listener.start()
            await listener.subscribe(subs)
            await publisher.start()

            # -- submit -> judged ---------------------------------------------------------
            progress(f"submitting {args.tasks} tasks")
            async with httpx.AsyncClient(base_url=helper_url, timeout=30) as client:
                spec = {"category": "laundry", "title": "Wash towels", "reward_krw": 3000, "daily_limit": 500}
                (
                    await client.put(f"/v1/branches/{BRANCH}/task-types/wash", json=spec, headers=owner)
                ).raise_for_status()
                (await client.put(f"/v1/branches/{BRANCH}/helpers/{helper_id}", headers=owner)).raise_for_status()
                submitted_at: dict[str, float] = {}
                submit_ms: list[float] = []
                refused = 0
                pending = list(images)

                async def phone() -> None:
                    nonlocal refused
                    while pending:
                        data = pending.pop()
                        began = time.perf_counter()
                        response = await client.post(
                            "/v1/tasks",
                            data={"branch_id": BRANCH, "task_type": "wash", "client_key": uuid.uuid4().hex},
                            files=[("photos", ("p.jpg", data, "image/jpeg"))],
                            headers=helper,
                        )
                        if response.status_code != 201:
                            refused += 1
                            continue
                        submit_ms.append((time.perf_counter() - began) * 1000)
                        submitted_at[response.json()["id"]] = began
                        await asyncio.sleep(args.interval_s)  # a steady stream, not one burst

                await asyncio.gather(*(phone() for _ in range(args.phones)))
                deadline = time.monotonic() + 60
                while len(set(submitted_at) & set(judged_at)) < len(submitted_at) and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
            loop_ms = [(judged_at[task] - began) * 1000 for task, began in submitted_at.items() if task in judged_at]
            unjudged = len(submitted_at) - len(loop_ms)

            # -- the owner's first page at 100,000 tasks ------------------------------------
            progress(f"filling the review queue with {args.queue_rows} tasks")
            await asyncio.to_thread(fill_queue, owner_db, args.queue_rows, BRANCH)
            progress("paging the owner's queue")
            queue_ms: list[float] = []
            async with httpx.AsyncClient(base_url=owner_url, timeout=30) as client:
                for n in range(args.pages + 20):
                    began = time.perf_counter()
                    response = await client.get(f"/v1/branches/{BRANCH}/queue?limit=50", headers=owner)
                    response.raise_for_status()
                    if n >= 20:  # warm-up
                        queue_ms.append((time.perf_counter() - began) * 1000)
                page_size = len(response.json()["items"])
            floor_ms = await healthz_ms(owner_url, args.pages)

            # -- ledger credits -------------------------------------------------------------
            progress(f"publishing {args.credits} decisions (+ duplicates)")
            helpers = [uuid.uuid4() for _ in range(50)]
            decisions = [
                TaskConfirmed(
                    task_id=uuid.uuid4(),
                    helper_id=helpers[n % len(helpers)],
                    branch_id=BRANCH,
                    task_type="wash",
                    decision="approved",
                    final_label="done",
                    ai_outcome="needs_review",
                    ai_overridden=False,
                    reward_krw=1000,
                    decided_by=owner_id,
                    decided_at=datetime.now(UTC),
                )
                for n in range(args.credits)
            ]
            rng = random.Random(7)
            messages = [OutgoingMessage.of(event) for event in decisions]
            repeats = [OutgoingMessage.of(event) for event in rng.sample(decisions, len(decisions) // 5)]
            second_words = [
                OutgoingMessage.of(event.model_copy(update={"event_id": uuid.uuid4()}))
                for event in rng.sample(decisions, len(decisions) // 20)
            ]
            stream = messages + repeats + second_words
            rng.shuffle(stream)
            with psycopg.connect(libpq(helper_db)) as connection:
                before = scalar(connection, "SELECT count(*) FROM ledger_entries")
            began = time.perf_counter()
            for chunk in range(0, len(stream), 500):
                await publisher.publish_many(stream[chunk : chunk + 500])
            deadline = time.monotonic() + 90
            with psycopg.connect(libpq(helper_db), autocommit=True) as connection:
                while time.monotonic() < deadline:
                    credited = scalar(connection, "SELECT count(*) FROM ledger_entries") - before
                    if credited >= args.credits:
                        break
                    await asyncio.sleep(0.05)
                credit_s = time.perf_counter() - began
                await asyncio.sleep(2.0)  # let any straggling duplicate land before counting
                doubles = scalar(
                    connection,
                    "SELECT coalesce(sum(n - 1), 0) FROM (SELECT task_id, count(*) AS n FROM ledger_entries"
                    " WHERE kind = 'task_reward' GROUP BY task_id) per_task",
                )
                total = scalar(
                    connection,
                    "SELECT coalesce(sum(amount_krw), 0) FROM ledger_entries"
                    " WHERE kind = 'task_reward' AND task_id = ANY(%s)",
                    [event.task_id for event in decisions],
                )
                credited = scalar(connection, "SELECT count(*) FROM ledger_entries") - before
            helper_floor_ms = await healthz_ms(helper_url, 100)
    finally:
        await listener.close()
        await publisher.close()
        for process in processes:
            stop(process)
        databases.drop_all()

    loop, submit, queue, floor = summary(loop_ms), summary(submit_ms), summary(queue_ms), summary(floor_ms)
    judge, intake, hfloor = summary(measure_ms), summary(intake_ms), summary(helper_floor_ms)
    rate = credited / credit_s
    print(f"\nhelpers' task loop - {machine()}, load average before/after {load_before} / {os.getloadavg()[0]:.1f}")
    ms = "{:.1f}".format
    table(
        "latencies (ms)",
        ["what", "n", "p50", "p95", "p99"],
        [
            ["submit -> TaskJudged on the broker", len(loop_ms), ms(loop["p50"]), ms(loop["p95"]), ms(loop["p99"])],
            ["  of which the upload (201)", len(submit_ms), ms(submit["p50"]), ms(submit["p95"]), ms(submit["p99"])],
            ["  baseline: intake of one photo alone", len(intake_ms), ms(intake["p50"]), ms(intake["p95"]), "-"],
            ["  baseline: judge's measurements alone", len(measure_ms), ms(judge["p50"]), ms(judge["p95"]), "-"],
            [
                "  baseline: helper /healthz",
                len(helper_floor_ms),
                ms(hfloor["p50"]),
                ms(hfloor["p95"]),
                ms(hfloor["p99"]),
            ],
            [
                f"owner's first queue page ({page_size} of {args.queue_rows:,})",
                len(queue_ms),
                ms(queue["p50"]),
                ms(queue["p95"]),
                ms(queue["p99"]),
            ],
            ["  baseline: branch_owner /healthz", len(floor_ms), ms(floor["p50"]), ms(floor["p95"]), ms(floor["p99"])],
        ],
    )
    table(
        "ledger credits",
        ["decisions", "messages sent", "entries", "seconds", "per second", "double credits", "credited KRW / expected"],
        [
            [
                args.credits,
                len(stream),
                credited,
                f"{credit_s:.2f}",
                f"{rate:.0f}",
                doubles,
                f"{total:,} / {args.credits * 1000:,}",
            ]
        ],
    )
    print(f"refused submissions: {refused}; never judged: {unjudged}")
    emit(
        {
            "submit_to_judged_p50_ms": round(loop["p50"], 1),
            "submit_to_judged_p95_ms": round(loop["p95"], 1),
            "submit_to_judged_n": len(loop_ms),
            "judge_measure_p50_ms": round(judge["p50"], 1),
            "review_queue_p50_ms": round(queue["p50"], 1),
            "review_queue_p95_ms": round(queue["p95"], 1),
            "review_queue_n": len(queue_ms),
            "review_queue_rows": args.queue_rows,
            "healthz_p95_ms": round(floor["p95"], 1),
            "ratio_queue_to_healthz_p95": round(queue["p95"] / floor["p95"], 2),
            "ledger_credits_per_s": round(rate, 1),
            "ledger_messages": len(stream),
            "double_credits": int(doubles) + (1 if total != args.credits * 1000 else 0),
            "failures": refused + unjudged,
            "machine": machine(),
            "load_average": round(os.getloadavg()[0], 1),
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=110)
    parser.add_argument("--phones", type=int, default=2, help="uploads in flight at once")
    parser.add_argument("--interval-s", type=float, default=0.05)
    parser.add_argument("--queue-rows", type=int, default=100_000)
    parser.add_argument("--pages", type=int, default=150)
    parser.add_argument("--credits", type=int, default=1000)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
