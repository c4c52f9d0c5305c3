"""From owners' corrections to a verified task-judge pack, in one process (SQLite, the
in-process bus): the trigger, the split, training, the pack format and the gate."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sqlalchemy import select

from common.migrations import upgrade
from contracts import ModelDeployed, TrainingRequested
from helper.classifier import Classifier
from mlops import jobs, pipeline, taskpack
from mlops.models import ModelVersion, TaskLabel
from tests.mlops.conftest import OPERATOR
from tests.mlops.synthetic import photo, seed_helper
from tests.support.waiting import eventually

SMALL = {
    "mlops_retrain_corrections": 100,
    "mlops_min_training_labels": 40,
    "mlops_holdout_share": 0.4,
    "mlops_holdout_time_share": 0.4,
}


async def test_a_hundred_corrections_train_a_verified_pack_that_helpers_judge_loads(open_mlops, tmp_path):
    async with open_mlops(**SMALL) as app:
        settings = app.settings
        upgrade("helper", settings.database_url("helper"))
        seeded = seed_helper(
            helper_url=settings.database_url("helper"), photo_dir=settings.photo_dir, tasks=220, corrections=100
        )
        # 99 corrections: no run yet.
        ninety_nine = [e for e in seeded.events if e.ai_overridden][:99]
        await app.publish(*ninety_nine)
        await eventually(lambda: _labels(app, 99), timeout=20)
        assert not app.of(TrainingRequested)
        await app.publish(*[e for e in seeded.events if e not in ninety_nine])
        await eventually(lambda: len(app.of(TrainingRequested)) == 1, timeout=20)
        await eventually(lambda: _labels(app, 220), timeout=20)
        request = app.of(TrainingRequested)[0]
        progress = await app.client.get(f"/v1/training-runs/{request.run_id}", headers=OPERATOR)
        assert progress.json()["status"] == "queued"
        assert progress.json()["trigger"] == "corrections"

        resources = jobs.Resources.open(settings)
        try:
            outcome = await jobs.execute(resources=resources, run_id=request.run_id, worker="test-worker")
        finally:
            await resources.close()
        assert outcome == "succeeded"
        run = (await app.client.get(f"/v1/training-runs/{request.run_id}", headers=OPERATOR)).json()
        assert run["status"] == "succeeded", run
        assert run["progress"] == 1.0
        version = run["version"]
        row = (await app.client.get(f"/v1/models/task_judge/versions/{version}", headers=OPERATOR)).json()
        assert row["status"] == "verified", row["verification"]
        assert row["metrics"]["heldout_accuracy"] >= 0.9
        assert row["metrics"]["deployed_heldout_accuracy"] is None  # nothing deployed yet
        assert row["metrics"]["latency_ms"] < settings.mlops_latency_budget_ms
        assert row["data_snapshot_id"]
        assert row["code_version"] == settings.mlops_code_version
        assert row["parameters"]["model"] == "logistic-regression"
        assert row["run_id"] == str(request.run_id)
        assert {file["name"] for file in row["files"]} == {"manifest.json", "model.onnx"}

        # The pack, as stored, loads in helper's task judge (its own loader) and judges.
        pack_dir = settings.pack_dir / "models" / "task_judge" / version
        classifier = Classifier.load(pack_dir)
        assert classifier.manifest.label == f"task-judge@{version}"
        import random

        rng = random.Random(99)
        done = classifier.probabilities([photo(True, rng) for _ in range(10)])
        not_done = classifier.probabilities([photo(False, rng) for _ in range(10)])
        assert np.mean(done) > 0.8 > 0.2 > np.mean(not_done)

        deployed = await app.client.post(
            "/v1/models/task_judge/deployments", json={"version": version, "canary_share": 1.0}, headers=OPERATOR
        )
        assert deployed.status_code == 201, deployed.text
        await eventually(lambda: len(app.of(ModelDeployed)) == 1, timeout=10)
        event = app.of(ModelDeployed)[0]
        assert event.version == version
        assert {file.sha256 for file in event.files} == {file["sha256"] for file in row["files"]}

        # A second run on the same data: the deployed model is the bar now.
        second = await app.client.post("/v1/models/task_judge/training-runs", headers=OPERATOR)
        assert second.status_code == 202, second.text
        busy = await app.client.post("/v1/models/task_judge/training-runs", headers=OPERATOR)
        assert busy.status_code == 409  # one training run per family at a time
        resources = jobs.Resources.open(settings)
        try:
            await jobs.execute(resources=resources, run_id=uuid.UUID(second.json()["run_id"]), worker="test-worker")
        finally:
            await resources.close()
        again = (await app.client.get(f"/v1/training-runs/{second.json()['run_id']}", headers=OPERATOR)).json()
        newer = (await app.client.get(f"/v1/models/task_judge/versions/{again['version']}", headers=OPERATOR)).json()
        assert newer["parent_version"] == version
        assert newer["data_snapshot_id"] == row["data_snapshot_id"]  # same labels, same snapshot
        assert newer["metrics"]["deployed_heldout_accuracy"] == row["metrics"]["heldout_accuracy"]
        assert newer["status"] == "verified"  # the same data trains the same model: not worse


async def _labels(app, count: int) -> bool:
    async with app.app.state.kernel.db.transaction() as session:
        return len((await session.scalars(select(TaskLabel.task_id))).all()) == count


def _example(helper: int, day: int, done: bool = True) -> pipeline.Example:
    return pipeline.Example(
        task_id=uuid.uuid4(),
        helper_id=uuid.UUID(int=helper),
        decided_at=datetime(2026, 11, 1, tzinfo=UTC) + timedelta(days=day),
        done=done,
        photos=np.zeros((1, 3, 8, 8), dtype=np.float32),
    )


def test_the_split_keeps_helpers_and_periods_apart():
    examples = [_example(helper, day, bool(day % 2)) for helper in range(1, 41) for day in range(20)]
    split = pipeline.split(examples, holdout_share=0.3, time_share=0.3)
    assert split.train
    assert split.test
    assert split.cutoff is not None
    train_helpers = {example.helper_id for example in split.train}
    test_helpers = {example.helper_id for example in split.test}
    assert not train_helpers & test_helpers  # no helper on both sides
    assert max(example.decided_at for example in split.train) < split.cutoff
    assert min(example.decided_at for example in split.test) >= split.cutoff
    assert len(split.train) + len(split.test) + split.left_out == len(examples)
    # Stable: the same data splits the same way, whatever its order.
    again = pipeline.split(list(reversed(examples)), holdout_share=0.3, time_share=0.3)
    assert {e.task_id for e in again.test} == {e.task_id for e in split.test}


def test_the_snapshot_id_depends_on_the_labels_not_their_order():
    pairs = [(uuid.uuid4(), "done"), (uuid.uuid4(), "not_done")]
    assert pipeline.snapshot_id(pairs) == pipeline.snapshot_id(list(reversed(pairs)))
    flipped = [(pairs[0][0], "not_done"), pairs[1]]
    assert pipeline.snapshot_id(flipped) != pipeline.snapshot_id(pairs)


@pytest.mark.parametrize(
    ("candidate", "deployed", "latency", "self_test", "passed"),
    [
        (0.90, 0.85, 1.0, None, True),
        (0.90, 0.90, 1.0, None, True),
        (0.80, 0.85, 1.0, None, False),  # worse than what is deployed
        (0.50, None, 1.0, None, False),  # below the floor with nothing deployed
        (0.90, 0.85, 99.0, None, False),  # too slow
        (0.90, 0.85, 1.0, "the model answered outside 0..1", False),
    ],
)
def test_the_gate(candidate, deployed, latency, self_test, passed):
    report = pipeline.gate(
        candidate_accuracy=candidate,
        deployed_accuracy=deployed,
        min_accuracy=0.6,
        latency=latency,
        latency_budget_ms=50,
        self_test=self_test,
        held_out=30,
    )
    assert report.passed is passed
    assert bool(report.reasons) is not passed


def test_a_pack_with_a_wrong_digest_or_a_bad_model_fails_the_self_test(tmp_path):
    rng = np.random.default_rng(1)
    model = taskpack.train_logistic(rng.normal(size=(40, 96)), np.array([0, 1] * 20, dtype=float))
    files = dict(taskpack.pack_files(taskpack.export_onnx(model), version="1.0.0"))
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    assert taskpack.load_pack(tmp_path).manifest.version == "1.0.0"
    (tmp_path / "model.onnx").write_bytes(files["model.onnx"] + b"\0")
    with pytest.raises(taskpack.PackInvalid, match="digest"):
        taskpack.load_pack(tmp_path)
    manifest = json.loads(files["manifest.json"])
    manifest["extra"] = 1
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(taskpack.PackInvalid, match="manifest"):
        taskpack.load_pack(tmp_path)


async def test_too_little_data_fails_the_run_with_a_reason(open_mlops):
    async with open_mlops(**SMALL) as app:
        upgrade("helper", app.settings.database_url("helper"))
        seeded = seed_helper(
            helper_url=app.settings.database_url("helper"), photo_dir=app.settings.photo_dir, tasks=20, corrections=5
        )
        await app.publish(*seeded.events)
        await eventually(lambda: _labels(app, 20), timeout=20)
        started = await app.client.post("/v1/models/task_judge/training-runs", headers=OPERATOR)
        run_id = uuid.UUID(started.json()["run_id"])
        resources = jobs.Resources.open(app.settings)
        try:
            assert await jobs.execute(resources=resources, run_id=run_id, worker="w") == "failed"
        finally:
            await resources.close()
        run = (await app.client.get(f"/v1/training-runs/{run_id}", headers=OPERATOR)).json()
        assert run["status"] == "failed"
        assert "training needs 40" in run["error"]
        async with app.app.state.kernel.db.transaction() as session:
            assert not (await session.scalars(select(ModelVersion))).all()
        # The face family is not trained here.
        face = await app.client.post("/v1/models/face/training-runs", headers=OPERATOR)
        assert face.status_code == 422
