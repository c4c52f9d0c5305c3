"""Operators' tools: the CLI, cancelling runs, verifying registered packs, the face gate's seam."""

from __future__ import annotations

import asyncio
import random
import uuid
from pathlib import Path

import numpy as np
from click.testing import CliRunner
from sqlalchemy import select

from common.db import kernel_tables_of
from common.migrations import upgrade
from mlops import jobs, taskpack
from mlops.cli import mlops
from mlops.models import Base
from mlops.settings import MlopsSettings
from mlops.verification import verify_face
from tests.mlops.conftest import OPERATOR
from tests.mlops.synthetic import photo, seed_helper
from tests.mlops.test_training import SMALL, _labels
from tests.support.waiting import eventually


def _pack(directory: Path, version: str) -> Path:
    """A task pack trained here on synthetic photos of its own."""
    rng = random.Random(5)
    labels = [index % 2 == 0 for index in range(60)]
    batch = np.stack([taskpack.photo_tensor(photo(done, rng)) for done in labels])
    model = taskpack.train_logistic(taskpack.features(batch), np.array(labels, dtype=float))
    directory.mkdir(parents=True)
    for name, data in taskpack.pack_files(taskpack.export_onnx(model), version=version):
        (directory / name).write_bytes(data)
    return directory


def _env(settings: MlopsSettings) -> dict[str, str]:
    return {"SMARTGYM_ENVIRONMENT": "test", "SMARTGYM_DATA_DIR": str(settings.data_dir)}


async def test_the_cli_registers_verifies_deploys_and_shows_history(open_mlops, tmp_path):
    async with open_mlops(**SMALL) as app:
        settings = app.settings
        upgrade("helper", settings.database_url("helper"))
        seeded = seed_helper(
            helper_url=settings.database_url("helper"), photo_dir=settings.photo_dir, tasks=120, corrections=10
        )
        await app.publish(*seeded.events)
        await eventually(lambda: _labels(app, 120), timeout=20)
        runner = CliRunner()
        env = _env(settings)

        def cli(*args: str):
            return runner.invoke(mlops, list(args), env=env, catch_exceptions=False)

        registered = await asyncio.to_thread(
            cli, "register", "task_judge", "3.0.0", str(_pack(tmp_path / "p", "3.0.0"))
        )
        assert registered.exit_code == 0, registered.output
        again = await asyncio.to_thread(cli, "register", "task_judge", "3.0.0", str(tmp_path / "p"))
        assert again.exit_code != 0
        assert "exists already" in again.output
        verify = await asyncio.to_thread(cli, "verify", "task_judge", "3.0.0")
        assert verify.exit_code == 0, verify.output
        run_id = uuid.UUID(verify.output.split()[-1])
        resources = jobs.Resources.open(settings)
        try:
            assert await jobs.execute(resources=resources, run_id=run_id, worker="t") == "succeeded"
        finally:
            await resources.close()
        progress = await asyncio.to_thread(cli, "progress", str(run_id))
        assert '"status": "succeeded"' in progress.output
        listed = await asyncio.to_thread(cli, "list", "--family", "task_judge")
        assert listed.output.split("\t")[:3] == ["task_judge", "3.0.0", "verified"], listed.output
        deployed = await asyncio.to_thread(cli, "deploy", "task_judge", "3.0.0", "--canary-share", "1")
        assert deployed.exit_code == 0, deployed.output
        async with app.app.state.kernel.db.transaction() as session:
            outbox = kernel_tables_of(Base.metadata).outbox
            keys = (await session.execute(select(outbox.c.routing_key))).scalars().all()
        assert "ModelDeployed.v1" in keys  # the running service's relay publishes it
        history = await asyncio.to_thread(cli, "history", "task_judge")
        assert "deploy\t3.0.0" in history.output
        nothing = await asyncio.to_thread(cli, "rollback", "task_judge")
        assert nothing.exit_code != 0
        assert "no previous version" in nothing.output


async def test_a_bad_pack_is_rejected_by_the_gate(open_mlops, tmp_path):
    async with open_mlops(**SMALL) as app:
        settings = app.settings
        upgrade("helper", settings.database_url("helper"))
        seeded = seed_helper(
            helper_url=settings.database_url("helper"), photo_dir=settings.photo_dir, tasks=120, corrections=10
        )
        await app.publish(*seeded.events)
        await eventually(lambda: _labels(app, 120), timeout=20)
        # A model trained on the real data, then inverted: it says the opposite of the truth.
        trained = await app.client.post("/v1/models/task_judge/training-runs", headers=OPERATOR)
        resources = jobs.Resources.open(settings)
        try:
            await jobs.execute(resources=resources, run_id=uuid.UUID(trained.json()["run_id"]), worker="t")
        finally:
            await resources.close()
        good = (await app.client.get(f"/v1/training-runs/{trained.json()['run_id']}", headers=OPERATOR)).json()
        pack_dir = settings.pack_dir / "models" / "task_judge" / good["version"]
        model_bytes = (pack_dir / "model.onnx").read_bytes()
        import onnx
        from onnx import numpy_helper

        graph = onnx.load_from_string(model_bytes)
        for initializer in graph.graph.initializer:
            inverted = -numpy_helper.to_array(initializer)
            initializer.CopyFrom(numpy_helper.from_array(inverted, initializer.name))
        bad_dir = tmp_path / "bad"
        bad_dir.mkdir()
        for name, data in taskpack.pack_files(graph.SerializeToString(), version="9.0.0"):
            (bad_dir / name).write_bytes(data)
        runner = CliRunner()
        result = await asyncio.to_thread(
            runner.invoke, mlops, ["register", "task_judge", "9.0.0", str(bad_dir)], env=_env(settings)
        )
        assert result.exit_code == 0, result.output
        verify = await app.client.post("/v1/models/task_judge/versions/9.0.0/verify", headers=OPERATOR)
        assert verify.status_code == 202, verify.text
        resources = jobs.Resources.open(settings)
        try:
            await jobs.execute(resources=resources, run_id=uuid.UUID(verify.json()["run_id"]), worker="t")
        finally:
            await resources.close()
        row = (await app.client.get("/v1/models/task_judge/versions/9.0.0", headers=OPERATOR)).json()
        assert row["status"] == "rejected"
        assert any("below the floor" in reason for reason in row["verification"]["reasons"])
        refused = await app.client.post(
            "/v1/models/task_judge/deployments", json={"version": "9.0.0"}, headers=OPERATOR
        )
        assert refused.status_code == 409
        again = await app.client.post("/v1/models/task_judge/versions/9.0.0/verify", headers=OPERATOR)
        assert again.status_code == 202  # a rejected version may be verified again
        verified_again = await app.client.post(
            f"/v1/models/task_judge/versions/{good['version']}/verify", headers=OPERATOR
        )
        assert verified_again.status_code == 409  # already verified: nothing to do


async def test_runs_are_cancelled_queued_at_once_and_running_at_their_next_step(open_mlops):
    async with open_mlops(**SMALL, mlops_worker_step_pause_s=0.3) as app:
        settings = app.settings
        upgrade("helper", settings.database_url("helper"))
        seeded = seed_helper(
            helper_url=settings.database_url("helper"), photo_dir=settings.photo_dir, tasks=120, corrections=10
        )
        await app.publish(*seeded.events)
        await eventually(lambda: _labels(app, 120), timeout=20)
        queued = (await app.client.post("/v1/models/task_judge/training-runs", headers=OPERATOR)).json()
        cancelled = await app.client.post(f"/v1/training-runs/{queued['run_id']}/cancel", headers=OPERATOR)
        assert cancelled.json()["status"] == "cancelled"
        twice = await app.client.post(f"/v1/training-runs/{queued['run_id']}/cancel", headers=OPERATOR)
        assert twice.status_code == 409

        running = (await app.client.post("/v1/models/task_judge/training-runs", headers=OPERATOR)).json()
        resources = jobs.Resources.open(settings)
        try:
            job = asyncio.create_task(
                jobs.execute(resources=resources, run_id=uuid.UUID(running["run_id"]), worker="t")
            )

            async def started() -> bool:
                response = await app.client.get(f"/v1/training-runs/{running['run_id']}", headers=OPERATOR)
                return response.json()["status"] == "running"

            await eventually(started, timeout=20)
            await app.client.post(f"/v1/training-runs/{running['run_id']}/cancel", headers=OPERATOR)
            assert await asyncio.wait_for(job, timeout=30) == "cancelled"
        finally:
            await resources.close()
        run = (await app.client.get(f"/v1/training-runs/{running['run_id']}", headers=OPERATOR)).json()
        assert run["status"] == "cancelled"
        assert run["step"] == "cancelled"
        listed = (await app.client.get("/v1/training-runs?family=task_judge", headers=OPERATOR)).json()
        assert {item["status"] for item in listed} == {"cancelled"}


class _Verdict:
    def __init__(self, passed: bool) -> None:
        self.passed = passed
        self.reasons = () if passed else ("TAR 0.71 at FAR 0.001 is below 0.9",)
        self.metrics = {"tar": 0.98 if passed else 0.71, "threshold": 0.41}


def test_the_face_gate_is_called_through_its_seam(tmp_path):
    seen = {}

    def verify_face_pack(*, candidate_dir, deployed_dir, evaluation_dir, far=1e-3, min_tar=0.9, **_):
        seen.update(candidate=candidate_dir, deployed=deployed_dir, evaluation=evaluation_dir, far=far, tar=min_tar)
        return _Verdict(passed=min_tar <= 0.95)

    settings = MlopsSettings(environment="test", data_dir=tmp_path, mlops_face_evaluation_dir=tmp_path / "set")
    report = verify_face(candidate_dir=tmp_path / "c", deployed_dir=None, settings=settings, verifier=verify_face_pack)
    assert report == {"passed": True, "reasons": [], "metrics": {"tar": 0.98, "threshold": 0.41}}
    assert seen["evaluation"] == tmp_path / "set"
    assert seen["far"] == settings.mlops_face_far
    strict = MlopsSettings(
        environment="test", data_dir=tmp_path, mlops_face_evaluation_dir=tmp_path / "set", mlops_face_min_tar=0.99
    )
    assert not verify_face(candidate_dir=tmp_path, deployed_dir=None, settings=strict, verifier=verify_face_pack)[
        "passed"
    ]
    no_set = MlopsSettings(environment="test", data_dir=tmp_path)
    report = verify_face(candidate_dir=tmp_path, deployed_dir=None, settings=no_set, verifier=verify_face_pack)
    assert not report["passed"]
    assert "evaluation set" in report["reasons"][0]
