"""Notifications per second: events from RabbitMQ through notification's consumer (inbox,
queued push, one commit per batch of events) and its FCM client to the local FCM stand-in.

notification runs as its own process (``smartgym serve notification``, PostgreSQL); this
process publishes ``EquipmentFault`` events to the broker and hosts the FCM stand-in,
which counts pushes as they arrive. Baseline: the FCM client alone, sending straight to
the same stand-in with the same concurrency, no broker or database.

The machine is shared and its load moves within seconds, so the two are measured in
alternating rounds (baseline, then pipeline, ``--rounds`` times, ``--events`` each) and
each round's ratio compares neighbours; the headline ratio is the median round's. Both
paths are warmed up first (a connection and an access token), and the pipeline's figure
counts distinct notices (by fault id) and fails on a shortfall or a repeat.

    python bench/notification_push_throughput.py [--events 3000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


from bench._common import (
    check_delivered,
    cpu_seconds,
    emit,
    ensure_services,
    fail,
    machine,
    progress,
    register_owner_phone,
    run_on_service_loop,
    shared_broker_namespace,
    table,
)
from common.events.envelope import OutgoingMessage
from common.events.rabbitmq import RabbitMQBus
from common.migrations import upgrade
from common.observability import Metrics
from common.security import Role
from contracts import CATALOG, EquipmentFault
from notification.fcm import FcmSender, Push, ServiceAccount
from notification.fcm_sim import FcmSimState
from notification.fcm_sim import create_app as create_fcm
from tests.support import tokens
from tests.support.apps import free_port, serving
from tests.support.infra import PG_ADMIN_URL, RABBITMQ_URL, PostgresDatabases
from tests.support.processes import clean_env, start, stop, wait_healthy

ROOT = Path(__file__).resolve().parents[1]
BRANCH = "bench-branch"
CONCURRENCY = 64


@dataclass
class Round:
    baseline_rate: float
    baseline_cpu: float  # this process (client and stand-in), per push
    pipeline_seconds: float
    delivered: int  # distinct notices pushed
    publish_seconds: float
    notification_cpu: float  # notification's process, per push
    local_cpu: float  # this process (publisher and stand-in), per push

    @property
    def pipeline_rate(self) -> float:
        return self.delivered / self.pipeline_seconds

    @property
    def ratio(self) -> float:
        return self.pipeline_rate / self.baseline_rate


async def baseline(sender: FcmSender, count: int, tag: str) -> tuple[float, float]:
    """Pushes per second, and CPU seconds of this process (client and stand-in) per push."""
    semaphore = asyncio.Semaphore(CONCURRENCY)

    async def one(n: int) -> None:
        async with semaphore:
            await sender.send(Push(f"baseline-{tag}-{n:06d}", "title", "body", {"kind": "baseline"}, False))

    started, cpu_started = time.perf_counter(), time.process_time()
    await asyncio.gather(*(one(n) for n in range(count)))
    return count / (time.perf_counter() - started), (time.process_time() - cpu_started) / count


def faults(count: int) -> list[EquipmentFault]:
    return [
        EquipmentFault(
            fault_id=uuid.uuid4(),
            device_id=f"sim-{n:05d}",
            branch_id=BRANCH,
            kind="treadmill",
            name=f"Treadmill {n}",
            criticality="major",
            reason="ping failed: timeout",
            detected_at=datetime.now(UTC),
        )
        for n in range(count)
    ]


async def pipeline(
    bus: RabbitMQBus, fcm: FcmSimState, pid: int, events: list[EquipmentFault], *, what: str
) -> tuple[float, int, float, float, float]:
    """Seconds from the first publish to the last push, distinct notices pushed, seconds
    spent publishing, and CPU seconds per push of notification and of this process."""
    fcm.received.clear()
    wanted = [str(event.fault_id) for event in events]
    started, cpu_started = time.perf_counter(), time.process_time()
    service_cpu_started = cpu_seconds(pid)
    for chunk in range(0, len(events), 500):
        await bus.publish_many([OutgoingMessage.of(event) for event in events[chunk : chunk + 500]])
    published = time.perf_counter() - started
    deadline = time.monotonic() + 300
    while len(fcm.received) < len(events) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    elapsed = time.perf_counter() - started
    service_cpu = cpu_seconds(pid) - service_cpu_started
    local_cpu = time.process_time() - cpu_started
    await asyncio.sleep(0.5)  # a repeat would arrive by now
    counts = check_delivered(what, wanted, [item.message["data"]["fault_id"] for item in fcm.received])
    if counts["repeats"]:
        fail(f"{what}: {counts['repeats']} notices pushed more than once")
    delivered = max(1, counts["distinct"])
    return elapsed, counts["distinct"], published, service_cpu / delivered, local_cpu / delivered


async def run(args: argparse.Namespace) -> None:
    ensure_services()
    scratch = Path(tempfile.mkdtemp(prefix="bench-notification-"))
    databases = PostgresDatabases(PG_ADMIN_URL)
    database = databases.create("bench_notification")
    upgrade("notification", database)
    namespace = shared_broker_namespace()
    fcm_port, port = free_port(), free_port()
    fcm_url = f"http://127.0.0.1:{fcm_port}"
    account = ServiceAccount.ephemeral("smartgym-bench", f"{fcm_url}/token")
    fcm = FcmSimState(project_id=account.project_id, public_key_pem=account.public_key_pem())
    owner = tokens.issuer().issue(str(uuid.uuid4()), [Role.BRANCH_OWNER], [BRANCH])
    process = None
    bus = RabbitMQBus(RABBITMQ_URL, catalog=CATALOG, metrics=Metrics(), namespace=namespace)
    rounds: list[Round] = []
    sender = FcmSender(account, endpoint=fcm_url)
    try:
        async with serving(tokens.jwks_app()) as auth_url, serving(create_fcm(fcm), fcm_port):
            env = clean_env(
                SMARTGYM_BROKER_URL=RABBITMQ_URL,
                SMARTGYM_BUS_NAMESPACE=namespace,
                SMARTGYM_AUTH_URL=auth_url,
                SMARTGYM_DATA_DIR=str(scratch),
                SMARTGYM_LOG_LEVEL="WARNING",
                SMARTGYM_NOTIFICATION_DATABASE_URL=database,
                SMARTGYM_FCM_PROJECT_ID=account.project_id,
                SMARTGYM_FCM_ENDPOINT=fcm_url,
                SMARTGYM_FCM_TOKEN_URI=account.token_uri,
                SMARTGYM_FCM_SERVICE_ACCOUNT_FILE=str(account.to_file(scratch / "fcm.json")),
                SMARTGYM_NOTIFICATION_SEND_CONCURRENCY=str(CONCURRENCY),
            )
            log = scratch / "notification.log"
            process = start(["serve", "notification", "--port", str(port)], env=env, cwd=ROOT, log=log)
            wait_healthy(f"http://127.0.0.1:{port}", process, log)
            await register_owner_phone(f"http://127.0.0.1:{port}", owner)
            await bus.start()
            # Warm-up, untimed: each path's connections and access token.
            await baseline(sender, CONCURRENCY, "warm-up")
            await pipeline(bus, fcm, process.pid, faults(CONCURRENCY), what="warm-up")
            for number in range(1, args.rounds + 1):
                direct_rate, direct_cpu = await baseline(sender, args.events, f"r{number}")
                fcm.received.clear()
                seconds, delivered, published, service_cpu, local_cpu = await pipeline(
                    bus, fcm, process.pid, faults(args.events), what=f"round {number}"
                )
                rounds.append(Round(direct_rate, direct_cpu, seconds, delivered, published, service_cpu, local_cpu))
                progress(
                    f"round {number}: client alone {direct_rate:.0f}/s, pipeline {rounds[-1].pipeline_rate:.0f}/s,"
                    f" ratio {rounds[-1].ratio:.3f}"
                )
    finally:
        await sender.close()
        await bus.close()
        if process is not None:
            stop(process)
        databases.drop_all()

    print(f"\nnotification push throughput - {machine()}, n = {args.events} pushes per path and round")
    rows = []
    for number, item in enumerate(rounds, 1):
        rows.append(
            [
                number,
                f"{item.baseline_rate:.0f}",
                f"{item.pipeline_rate:.0f}",
                f"{item.ratio:.3f}",
                f"{args.events / item.publish_seconds:.0f}",
                f"{item.baseline_cpu * 1e6:.0f}",
                f"{item.notification_cpu * 1e6:.0f}",
                f"{item.local_cpu * 1e6:.0f}",
            ]
        )
    table(
        "events -> pushes, alternating rounds",
        [
            "round",
            "client alone /s",
            "broker -> consumer -> inbox + queue -> FCM /s",
            "ratio",
            "publishing /s",
            "CPU µs/push client + stand-in",
            "CPU µs/push notification",
            "CPU µs/push publisher + stand-in",
        ],
        rows,
    )
    ratios = [item.ratio for item in rounds]
    emit(
        {
            "events_per_round": args.events,
            "rounds": len(rounds),
            "delivered": sum(item.delivered for item in rounds),
            "ratio_per_round": [round(ratio, 3) for ratio in ratios],
            "push_ratio_to_client": round(statistics.median(ratios), 3),
            "push_ratio_to_client_min": round(min(ratios), 3),
            "notifications_per_s": [round(item.pipeline_rate, 1) for item in rounds],
            "fcm_client_alone_per_s": [round(item.baseline_rate, 1) for item in rounds],
            "notification_cpu_us_per_push": round(statistics.median(item.notification_cpu for item in rounds) * 1e6),
            "client_alone_cpu_us_per_push": round(statistics.median(item.baseline_cpu for item in rounds) * 1e6),
            "publisher_and_standin_cpu_us_per_push": round(statistics.median(item.local_cpu for item in rounds) * 1e6),
            "load_1min": round(os.getloadavg()[0], 2),
            "machine": machine(),
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=3000, help="pushes per path and round")
    parser.add_argument("--rounds", type=int, default=3)
    # The FCM client alone is timed in this process: on the loop notification runs on.
    run_on_service_loop(run(parser.parse_args()))


if __name__ == "__main__":
    main()
