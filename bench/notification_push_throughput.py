"""Notifications per second: events from RabbitMQ through notification's consumer (inbox,
queued push, one commit per batch of events) and its FCM client to the local FCM stand-in.

notification runs as its own process (``smartgym serve notification``, PostgreSQL); this
process publishes ``EquipmentFault`` events to the broker and hosts the FCM stand-in,
which counts pushes as they arrive. Baseline in the same run: the FCM client alone,
sending straight to the same stand-in with the same concurrency, no broker or database.

    python bench/notification_push_throughput.py [--events 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

from bench._common import cpu_seconds, emit, ensure_services, jwks_app, machine, table
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


async def baseline(account: ServiceAccount, fcm_url: str, fcm: FcmSimState, count: int) -> tuple[float, float]:
    """Pushes per second, and CPU seconds of this process (client and stand-in) per push."""
    sender = FcmSender(account, endpoint=fcm_url)
    semaphore = asyncio.Semaphore(CONCURRENCY)

    async def one(n: int) -> None:
        async with semaphore:
            await sender.send(Push(f"baseline-token-{n:06d}", "title", "body", {"kind": "baseline"}, False))

    try:
        await sender.send(Push("warm-up-token-000000", "t", "b", {}, False))
        started, cpu_started = time.perf_counter(), time.process_time()
        await asyncio.gather(*(one(n) for n in range(count)))
        return count / (time.perf_counter() - started), (time.process_time() - cpu_started) / count
    finally:
        await sender.close()


async def run(args: argparse.Namespace) -> None:
    ensure_services()
    scratch = Path(tempfile.mkdtemp(prefix="bench-notification-"))
    databases = PostgresDatabases(PG_ADMIN_URL)
    database = databases.create("bench_notification")
    upgrade("notification", database)
    namespace = f"bench{uuid.uuid4().hex[:8]}"
    fcm_port, port = free_port(), free_port()
    fcm_url = f"http://127.0.0.1:{fcm_port}"
    account = ServiceAccount.ephemeral("smartgym-bench", f"{fcm_url}/token")
    fcm = FcmSimState(project_id=account.project_id, public_key_pem=account.public_key_pem())
    owner = tokens.issuer().issue(str(uuid.uuid4()), [Role.BRANCH_OWNER], [BRANCH])
    process = None
    bus = RabbitMQBus(RABBITMQ_URL, catalog=CATALOG, metrics=Metrics(), namespace=namespace)
    try:
        async with serving(jwks_app()) as auth_url, serving(create_fcm(fcm), fcm_port):
            direct_rate, direct_cpu = await baseline(account, fcm_url, fcm, args.events)
            fcm.received.clear()
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
            async with httpx.AsyncClient() as client:
                response = await client.put(
                    f"http://127.0.0.1:{port}/me/push-tokens",
                    json={"token": "owner-phone-bench-0001", "platform": "android"},
                    headers={"authorization": f"Bearer {owner}"},
                )
                response.raise_for_status()
            await bus.start()
            events = [
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
                for n in range(args.events)
            ]
            started, cpu_started = time.perf_counter(), time.process_time()
            service_cpu_started = cpu_seconds(process.pid)
            for chunk in range(0, len(events), 500):
                await bus.publish_many([OutgoingMessage.of(event) for event in events[chunk : chunk + 500]])
            published = time.perf_counter() - started
            deadline = time.monotonic() + 300
            while len(fcm.received) < args.events and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            elapsed = time.perf_counter() - started
            delivered = len(fcm.received)
            # notification's own process, and this one (the publisher and the stand-in).
            service_cpu = (cpu_seconds(process.pid) - service_cpu_started) / max(1, delivered)
            local_cpu = (time.process_time() - cpu_started) / max(1, delivered)
    finally:
        await bus.close()
        if process is not None:
            stop(process)
        databases.drop_all()

    rate = delivered / elapsed
    print(f"\nnotification push throughput - {machine()}")
    table(
        "events -> pushes",
        ["path", "messages", "seconds", "per second", "CPU µs/push (process)"],
        [
            [
                "FCM client alone (baseline)",
                args.events,
                f"{args.events / direct_rate:.2f}",
                f"{direct_rate:.0f}",
                f"{direct_cpu * 1e6:.0f} (client + stand-in)",
            ],
            [
                "broker -> consumer -> inbox + queue -> FCM",
                delivered,
                f"{elapsed:.2f}",
                f"{rate:.0f}",
                f"{service_cpu * 1e6:.0f} (notification)",
            ],
            [
                "(publishing the events; the stand-in)",
                args.events,
                f"{published:.2f}",
                f"{args.events / published:.0f}",
                f"{local_cpu * 1e6:.0f} (publisher + stand-in)",
            ],
        ],
    )
    emit(
        {
            "events": args.events,
            "delivered": delivered,
            "notifications_per_s": round(rate, 1),
            "fcm_client_alone_per_s": round(direct_rate, 1),
            "ratio_to_client_alone": round(rate / direct_rate, 3),
            "push_ratio_to_client": round(rate / direct_rate, 3),
            "notification_cpu_us_per_push": round(service_cpu * 1e6),
            "client_alone_cpu_us_per_push": round(direct_cpu * 1e6),
            "publisher_and_standin_cpu_us_per_push": round(local_cpu * 1e6),
            "load_1min": round(os.getloadavg()[0], 2),
            "machine": machine(),
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2000)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
