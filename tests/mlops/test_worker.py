"""The training worker as operators run it (`smartgym serve mlops-worker`), on the real
broker and PostgreSQL: corrections to a deployed candidate, and a job that completes
exactly once through a worker killed mid-job and a broker restarted mid-job."""

from __future__ import annotations

import asyncio
import json
import signal
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pika
import pytest
from sqlalchemy import func, select

from common.events.envelope import Event, OutgoingMessage
from common.kernel import make_bus
from common.migrations import upgrade
from common.observability import Metrics
from contracts import CATALOG, ModelDeployed
from mlops.app import create_app
from mlops.models import ModelVersion, TrainingRun
from mlops.settings import MlopsSettings
from mlops.worker import queue_names
from tests.mlops.conftest import OPERATOR
from tests.mlops.synthetic import seed_helper
from tests.support import processes, tokens
from tests.support.apps import asgi_client
from tests.support.infra import PostgresRole, restart_broker_app
from tests.support.waiting import eventually

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Stack:
    settings: MlopsSettings
    app: Any
    client: Any
    publisher: Any
    env: dict[str, str]
    tmp_path: Path
    observed: list[Event] = field(default_factory=list)
    workers: list[Any] = field(default_factory=list)

    def start_worker(self, name: str, **extra: str):
        log = self.tmp_path / f"worker-{name}.log"
        env = {**self.env, "SMARTGYM_MLOPS_WORKER_ID": name, **extra}
        process = processes.start(["serve", "mlops-worker"], env=processes.clean_env(**env), cwd=ROOT, log=log)
        self.workers.append((process, log))
        return process

    async def run(self, run_id: uuid.UUID) -> TrainingRun:
        async with self.app.state.kernel.db.transaction() as session:
            row = await session.get(TrainingRun, run_id)
            assert row is not None
            return row

    async def versions_of(self, run_id: uuid.UUID) -> int:
        async with self.app.state.kernel.db.transaction() as session:
            return int(await session.scalar(select(func.count()).where(ModelVersion.run_id == run_id)) or 0)

    async def seed(self, *, corrections: int = 100, tasks: int = 220) -> None:
        seeded = seed_helper(
            helper_url=self.settings.database_url("helper"),
            photo_dir=self.settings.photo_dir,
            tasks=tasks,
            corrections=corrections,
        )
        await self.publisher.publish_many([OutgoingMessage.of(event) for event in seeded.events])


@pytest.fixture
async def stack(postgres, rabbitmq_url, namespace, broker_cleanup, tmp_path, monkeypatch) -> AsyncIterator[Stack]:
    role = PostgresRole("mlops_reader")
    monkeypatch.setenv("SMARTGYM_MLOPS_READER_ROLE", role.name)
    urls = {"mlops": postgres.create("mlops"), "helper": postgres.create("helper")}
    values = {
        "environment": "test",
        "data_dir": str(tmp_path),
        "broker_url": rabbitmq_url,
        "bus_namespace": namespace,
        "database_urls": urls,
        "mlops_reader_role": role.name,
        "mlops_min_training_labels": 40,
        "mlops_holdout_share": 0.4,
        "mlops_holdout_time_share": 0.4,
        "mlops_job_lease_s": 3.0,
        "outbox_poll_interval_s": 0.05,
    }
    settings = MlopsSettings(**values)
    for service, url in urls.items():
        upgrade(service, url)
    env = {
        f"SMARTGYM_{key.upper()}": json.dumps(value) if isinstance(value, dict) else str(value)
        for key, value in values.items()
    }
    app = create_app(settings, keys=tokens.key_cache())
    publisher = make_bus(settings, Metrics(), CATALOG)
    await publisher.start()
    stack_ = None
    try:
        async with asgi_client(app) as client:
            stack_ = Stack(settings, app, client, publisher, env, tmp_path)

            async def observe(event: Event) -> None:
                stack_.observed.append(event)

            await publisher.broadcast([ModelDeployed], observe)
            yield stack_
    finally:
        for process, log in stack_.workers if stack_ else []:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except Exception:
                    process.kill()
            print(log.read_text()[-2000:])
        await publisher.close()
        role.drop(with_databases=postgres)


def ready_messages(settings: MlopsSettings) -> int:
    connection = pika.BlockingConnection(pika.URLParameters(str(settings.broker_url)))
    try:
        declared = connection.channel().queue_declare(queue_names(settings).queue, passive=True)
        return int(declared.method.message_count)
    finally:
        connection.close()


async def test_corrections_train_a_candidate_in_the_worker_and_its_deploy_reaches_the_broker(stack):
    stack.start_worker("w1")
    await stack.seed()
    client = stack.client

    async def run_finished() -> bool:
        runs = (await client.get("/v1/training-runs", headers=OPERATOR)).json()
        return bool(runs) and runs[0]["status"] in ("succeeded", "failed", "cancelled")

    await eventually(run_finished, timeout=90, every=0.5)
    run = (await client.get("/v1/training-runs", headers=OPERATOR)).json()[0]
    assert run["status"] == "succeeded", run
    assert run["trigger"] == "corrections"
    version = (await client.get(f"/v1/models/task_judge/versions/{run['version']}", headers=OPERATOR)).json()
    assert version["status"] == "verified", version["verification"]

    deployed = await client.post(
        "/v1/models/task_judge/deployments", json={"version": run["version"], "canary_share": 0.5}, headers=OPERATOR
    )
    assert deployed.status_code == 201, deployed.text
    await eventually(lambda: any(isinstance(e, ModelDeployed) for e in stack.observed), timeout=20)
    event = next(e for e in stack.observed if isinstance(e, ModelDeployed))
    assert (event.version, event.canary_share, event.action) == (run["version"], 0.5, "deploy")
    assert str(event.deployment_id) == deployed.json()["deployment_id"]


async def _start_slow_run(stack) -> uuid.UUID:
    await stack.seed(corrections=10, tasks=120)  # below the trigger: the operator starts the run
    await eventually(lambda: _labels_in(stack, 120), timeout=30, every=0.2)
    started = await stack.client.post("/v1/models/task_judge/training-runs", headers=OPERATOR)
    assert started.status_code == 202, started.text
    return uuid.UUID(started.json()["run_id"])


async def _labels_in(stack, count: int) -> bool:
    from mlops.models import TaskLabel

    async with stack.app.state.kernel.db.transaction() as session:
        return int(await session.scalar(select(func.count()).select_from(TaskLabel)) or 0) == count


@pytest.mark.slow
async def test_a_worker_killed_mid_job_leaves_the_job_to_the_next_which_completes_it_once(stack):
    # Two workers wait on the queue; whichever takes the job is killed in the middle of it.
    pause = {"SMARTGYM_MLOPS_WORKER_STEP_PAUSE_S": "1.0"}
    workers = {name: stack.start_worker(name, **pause) for name in ("w-a", "w-b")}
    for _process, log in stack.workers:
        await eventually(lambda log=log: "consuming" in log.read_text(), timeout=60, every=0.2)
    run_id = await _start_slow_run(stack)

    async def mid_job() -> bool:
        run = await stack.run(run_id)
        return run.status == "running" and run.step in ("split", "train", "export")

    await eventually(mid_job, timeout=60, every=0.1)
    doomed = (await stack.run(run_id)).lease_owner
    workers[doomed].send_signal(signal.SIGKILL)
    workers[doomed].wait(timeout=10)
    assert (await stack.run(run_id)).status == "running"  # its lease still holds it
    await eventually(lambda: _finished(stack, run_id), timeout=90, every=0.3)
    run = await stack.run(run_id)
    assert run.status == "succeeded", run.error
    assert run.lease_owner is not None
    assert run.lease_owner != doomed
    assert run.attempts == 2
    assert await stack.versions_of(run_id) == 1
    await _no_message_left(stack)


@pytest.mark.slow
@pytest.mark.exclusive
async def test_a_broker_restart_mid_job_does_not_lose_or_repeat_the_job(stack):
    stack.start_worker("steady", SMARTGYM_MLOPS_WORKER_STEP_PAUSE_S="1.0")
    run_id = await _start_slow_run(stack)

    async def mid_job() -> bool:
        run = await stack.run(run_id)
        return run.status == "running" and run.step in ("split", "train")

    await eventually(mid_job, timeout=60, every=0.1)
    await asyncio.to_thread(restart_broker_app, 1.0)  # a short outage of the shared broker
    await eventually(lambda: _finished(stack, run_id), timeout=90, every=0.3)
    run = await stack.run(run_id)
    assert run.status == "succeeded", run.error
    assert run.attempts == 1  # the job ran through the outage
    assert await stack.versions_of(run_id) == 1
    # Its message, unacknowledged when the connection dropped, comes back after the
    # worker reconnects: the worker finds the run finished and acknowledges it.
    log = stack.workers[0][1]
    await eventually(lambda: f"run {run_id}: finished" in log.read_text(), timeout=60, every=0.3)
    assert (await stack.run(run_id)).attempts == 1
    await _no_message_left(stack)


async def _finished(stack, run_id: uuid.UUID) -> bool:
    return (await stack.run(run_id)).status in ("succeeded", "failed", "cancelled")


async def _no_message_left(stack) -> None:
    # Stop the workers: an unacknowledged message would return to the queue.
    for process, _log in stack.workers:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
    assert await asyncio.to_thread(ready_messages, stack.settings) == 0
