"""From owners' corrections to a model on every task-judge replica, and back: 100
corrections start a training run, the run yields a verified version, the deployment
reaches two running helper replicas over the real broker, and a rollback restores the
previous version on both. One box's layout: SQLite files and the pack directory under
one data directory, RabbitMQ between the processes' buses."""

from __future__ import annotations

import io
import uuid
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from PIL import Image

from common.db import Database
from common.migrations import upgrade
from contracts import TaskConfirmed
from helper.models import Task, TaskPhoto
from helper.settings import HelperSettings
from mlops import jobs, registry, taskpack
from mlops.app import create_app
from mlops.packs import pack_store, upload_pack
from mlops.settings import MlopsSettings
from tests.mlops.conftest import OPERATOR
from tests.support import tokens
from tests.support.apps import asgi_client
from tests.support.modelpacks import helper_replica, registry_bus
from tests.support.waiting import eventually

pytestmark = pytest.mark.usefixtures("broker_cleanup")

BRANCH = "gangnam"
HELPERS = [uuid.uuid4() for _ in range(12)]


def photo(done: bool, seed: int) -> bytes:
    """A clean floor is bright, a dirty one dark (plus noise): learnable, not trivial."""
    rng = np.random.default_rng(seed)
    level = 190 if done else 70
    pixels = np.clip(rng.normal(level, 30, (48, 48, 3)), 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG", quality=90)
    return out.getvalue()


async def seed_helper_tasks(settings: HelperSettings, count: int) -> list[tuple[Task, bool]]:
    """Judged tasks with one stored photo each, as helper would have them."""
    import hashlib

    database = Database(settings.database_url("helper"))
    started = datetime(2026, 11, 1, tzinfo=UTC)
    made: list[tuple[Task, bool]] = []
    async with database.sessions() as session, session.begin():
        for index in range(count):
            done = index % 2 == 0
            task_id = uuid.uuid4()
            at = started + timedelta(hours=index)
            data = photo(done, index)
            key = f"{BRANCH}/{task_id}/0.jpg"
            path = settings.photo_dir / key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            task = Task(
                id=task_id,
                helper_id=HELPERS[index % len(HELPERS)],
                branch_id=BRANCH,
                task_type="wash",
                category="laundry",
                title="towels",
                client_key=f"k{index}",
                reward_krw=0,
                expected_photos=1,
                photo_count=1,
                status="judged",
                submitted_at=at,
                judged_at=at,
                outcome="fail" if done else "pass",  # the AI got it wrong: a correction
                confidence=0.6,
                reasons=[],
                model_version="1.0.0",
            )
            session.add(task)
            session.add(
                TaskPhoto(
                    task_id=task_id,
                    position=0,
                    branch_id=BRANCH,
                    key=key,
                    sha256=hashlib.sha256(data).hexdigest(),
                    content_type="image/jpeg",
                    size_bytes=len(data),
                    width=48,
                    height=48,
                    phash=index,
                    submitted_at=at,
                )
            )
            made.append((task, done))
    await database.dispose()
    return made


def confirmation(task: Task, done: bool) -> TaskConfirmed:
    return TaskConfirmed(
        task_id=task.id,
        helper_id=task.helper_id,
        branch_id=task.branch_id,
        task_type=task.task_type,
        decision="approved" if done else "rejected",
        final_label="done" if done else "not_done",
        ai_outcome="fail" if done else "pass",
        ai_overridden=True,
        reward_krw=0,
        decided_by=uuid.uuid4(),
        decided_at=task.submitted_at + timedelta(minutes=30),
    )


async def register_baseline(settings: MlopsSettings) -> None:
    """The version serving before any training: a model that cannot tell (p = 0.5)."""
    undecided = taskpack.LogisticModel(np.zeros(6 * taskpack.GRID * taskpack.GRID), 0.0, {})
    files = taskpack.pack_files(taskpack.export_onnx(undecided), version="1.0.0")
    store = pack_store(settings)
    described = await upload_pack(store, family="task_judge", version="1.0.0", files=files)
    await store.close()
    database = Database(settings.database_url("mlops"))
    async with database.transaction() as session:
        row = await registry.register(
            session, family="task_judge", version="1.0.0", files=described, code_version="baseline"
        )
        row.status = "verified"
    await database.dispose()


async def test_corrections_train_verify_deploy_and_roll_back_on_two_replicas(rabbitmq_url, namespace, tmp_path):
    shared = {
        "environment": "test",
        "data_dir": tmp_path,
        "broker_url": rabbitmq_url,
        "bus_namespace": namespace,
        "outbox_poll_interval_s": 0.05,
    }
    mlops_settings = MlopsSettings(**shared, mlops_retrain_corrections=100)
    helper_settings = HelperSettings(**shared)
    upgrade("mlops", mlops_settings.database_url("mlops"))
    upgrade("helper", helper_settings.database_url("helper"))
    tasks = await seed_helper_tasks(helper_settings, 100)
    await register_baseline(mlops_settings)

    async with AsyncExitStack() as stack:
        registry_side = await stack.enter_async_context(registry_bus(rabbitmq_url, namespace))
        mlops = await stack.enter_async_context(
            asgi_client(create_app(mlops_settings, keys=tokens.key_cache()), base_url="http://mlops")
        )
        replicas = [
            await stack.enter_async_context(
                helper_replica(
                    name, root=tmp_path, rabbitmq_url=rabbitmq_url, namespace=namespace, model_signal_window_s=0.5
                )
            )
            for name in ("judge-a", "judge-b")
        ]

        async def deploy_and_wait(path: str, body: dict[str, object]) -> dict[str, object]:
            response = await mlops.post(path, json=body, headers=OPERATOR)
            assert response.status_code == 201, response.text
            deployment_id = uuid.UUID(response.json()["deployment_id"])
            await eventually(lambda: any(e.deployment_id == deployment_id for e in registry_side.deployed), timeout=60)
            reports = await registry_side.reports_of(deployment_id)
            return {name: (r.outcome, r.active_version) for name, r in reports.items()}

        baseline = await deploy_and_wait("/v1/models/task_judge/deployments", {"version": "1.0.0", "canary_share": 1.0})
        assert baseline == {"helper@judge-a": ("serving", "1.0.0"), "helper@judge-b": ("serving", "1.0.0")}

        # 100 owners' corrections reach mlops over the bus: a training run is queued.
        for task, done in tasks:
            await registry_side.publish_event(confirmation(task, done))

        async def queued() -> list[dict[str, object]]:
            runs = (await mlops.get("/v1/training-runs", headers=OPERATOR)).json()
            return [run for run in runs if run["trigger"] == "corrections"]

        await eventually(queued, timeout=60)
        [run] = await queued()

        # The replicas counted the same confirmations as overrides of the version that
        # judged them (each confirmation reaches one replica: they share helper's queue).
        def overrides() -> tuple[int, int]:
            windows = [s for s in registry_side.signals if s.family == "task_judge" and s.version == "1.0.0"]
            return sum(s.samples for s in windows), sum(s.bad for s in windows)

        await eventually(lambda: overrides() == (100, 100), timeout=60)

        # The worker's job, run here (the worker process runs the same function).
        resources = jobs.Resources.open(mlops_settings)
        try:
            outcome = await jobs.execute(resources=resources, run_id=uuid.UUID(str(run["run_id"])), worker="test")
        finally:
            await resources.close()
        finished = (await mlops.get(f"/v1/training-runs/{run['run_id']}", headers=OPERATOR)).json()
        assert outcome == "succeeded", finished
        version = str(finished["version"])
        candidate = (await mlops.get(f"/v1/models/task_judge/versions/{version}", headers=OPERATOR)).json()
        assert candidate["status"] == "verified", candidate
        assert candidate["parent_version"] == "1.0.0"

        rolled_out = await deploy_and_wait(
            "/v1/models/task_judge/deployments", {"version": version, "canary_share": 1.0}
        )
        assert rolled_out == {"helper@judge-a": ("serving", version), "helper@judge-b": ("serving", version)}
        for replica in replicas:
            assert (await replica.get("/v1/judge/model", headers=OPERATOR)).json()["model_version"] == version

        rolled_back = await deploy_and_wait("/v1/models/task_judge/rollback", {"reason": "owners disagree"})
        assert rolled_back == {"helper@judge-a": ("serving", "1.0.0"), "helper@judge-b": ("serving", "1.0.0")}
        assert [e.action for e in registry_side.deployed] == ["deploy", "deploy", "rollback"]
        for replica in replicas:
            assert (await replica.get("/v1/judge/model", headers=OPERATOR)).json()["model_version"] == "1.0.0"
        deployed = (await mlops.get("/v1/models/task_judge/deployed")).json()
        assert deployed["stable"]["version"] == "1.0.0"
