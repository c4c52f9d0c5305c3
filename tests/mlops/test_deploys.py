"""Deploy, promote, rollback and the instances' reports, through the API and the bus."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from common.security import Role
from contracts import ModelDeployed, ModelSignalReported, ModelSwapReported
from tests.mlops.conftest import OPERATOR, bearer
from tests.support.waiting import eventually


async def test_a_canary_deploy_publishes_model_deployed_and_instances_report_back(mlops_app):
    await mlops_app.register("1.1.0")
    await mlops_app.register("1.2.0")
    first = await mlops_app.client.post(
        "/v1/models/task_judge/deployments", json={"version": "1.1.0", "canary_share": 1.0}, headers=OPERATOR
    )
    assert first.status_code == 201, first.text
    second = await mlops_app.client.post(
        "/v1/models/task_judge/deployments", json={"version": "1.2.0", "canary_share": 0.5}, headers=OPERATOR
    )
    assert second.status_code == 201, second.text
    await eventually(lambda: len(mlops_app.of(ModelDeployed)) == 2, timeout=10)
    published = mlops_app.of(ModelDeployed)[1]
    assert (published.version, published.action, published.canary_share) == ("1.2.0", "deploy", 0.5)
    assert published.previous_version == "1.1.0"
    assert published.files[0].key == "models/task_judge/1.2.0/model.onnx"

    # What an instance reads as it starts: the stable version and the canary.
    deployed = (await mlops_app.client.get("/v1/models/task_judge/deployed")).json()
    assert deployed["stable"]["version"] == "1.1.0"
    assert deployed["canary"]["version"] == "1.2.0"
    assert deployed["canary"]["deployment_id"] == str(published.deployment_id)

    now = datetime.now(UTC)
    for instance, outcome in (("helper-a", "serving"), ("helper-b", "not_selected")):
        await mlops_app.publish(
            ModelSwapReported(
                deployment_id=published.deployment_id,
                family="task_judge",
                version="1.2.0",
                instance_id=instance,
                outcome=outcome,
                active_version="1.2.0" if outcome == "serving" else "1.1.0",
                swap_ms=0.01,
                reported_at=now,
            )
        )

    async def reported() -> bool:
        response = await mlops_app.client.get(f"/v1/deployments/{published.deployment_id}", headers=OPERATOR)
        return len(response.json()["reports"]) == 2

    await eventually(reported, timeout=10)

    promoted = await mlops_app.client.post("/v1/models/task_judge/promote", headers=OPERATOR)
    assert promoted.status_code == 201, promoted.text
    await eventually(lambda: len(mlops_app.of(ModelDeployed)) == 3, timeout=10)
    assert mlops_app.of(ModelDeployed)[2].action == "promote"
    assert mlops_app.of(ModelDeployed)[2].canary_share == 1.0
    versions = {v["version"]: v["status"] for v in (await mlops_app.client.get("/v1/models", headers=OPERATOR)).json()}
    assert versions == {"1.1.0": "retired", "1.2.0": "deployed"}

    # Manual rollback: back to the previous version, on every instance.
    rolled = await mlops_app.client.post(
        "/v1/models/task_judge/rollback", json={"reason": "owners complain"}, headers=OPERATOR
    )
    assert rolled.status_code == 201, rolled.text
    await eventually(lambda: len(mlops_app.of(ModelDeployed)) == 4, timeout=10)
    back = mlops_app.of(ModelDeployed)[3]
    assert (back.version, back.action, back.canary_share, back.previous_version) == ("1.1.0", "rollback", 1.0, "1.2.0")
    deployed = (await mlops_app.client.get("/v1/models/task_judge/deployed")).json()
    assert deployed["stable"]["version"] == "1.1.0"
    assert deployed["canary"] is None
    history = (await mlops_app.client.get("/v1/models/task_judge/history", headers=OPERATOR)).json()
    assert [item["action"] for item in history] == ["rollback", "promote", "deploy", "deploy"]


async def test_a_canary_worse_than_the_baseline_is_rolled_back_automatically(open_mlops):
    async with open_mlops(mlops_canary_min_samples=100, mlops_canary_max_worsening=0.05) as app:
        await app.register("1.1.0")
        await app.register("1.2.0")
        for version, share in (("1.1.0", 1.0), ("1.2.0", 0.25)):
            response = await app.client.post(
                "/v1/models/task_judge/deployments", json={"version": version, "canary_share": share}, headers=OPERATOR
            )
            assert response.status_code == 201, response.text
        start = datetime.now(UTC)

        def signal(version: str, instance: str, samples: int, bad: int, minute: int) -> ModelSignalReported:
            return ModelSignalReported(
                family="task_judge",
                version=version,
                instance_id=instance,
                window_started_at=start + timedelta(minutes=minute),
                window_ended_at=start + timedelta(minutes=minute + 1),
                samples=samples,
                bad=bad,
            )

        # Too few canary samples yet: no judgement, even though the rate looks bad.
        await app.publish(signal("1.1.0", "a", 200, 10, 0), signal("1.2.0", "b", 40, 20, 0))
        await eventually(lambda: _canary(app), timeout=30)
        canary = (await app.client.get("/v1/models/task_judge/canary", headers=OPERATOR)).json()
        assert canary["canary_samples"] == 40
        assert not canary["decided"]
        # Both deploys leave through the outbox: the relay may not have sent the second yet.
        await eventually(lambda: len(app.of(ModelDeployed)) == 2, timeout=30)
        # Enough now: 25/120 ≈ 0.21 against 10/200 = 0.05, beyond the 0.05 bound.
        await app.publish(signal("1.2.0", "b", 80, 5, 1))
        await eventually(lambda: len(app.of(ModelDeployed)) == 3, timeout=30)
        rollback = app.of(ModelDeployed)[2]
        assert (rollback.action, rollback.version, rollback.previous_version) == ("rollback", "1.1.0", "1.2.0")
        deployed = (await app.client.get("/v1/models/task_judge/deployed")).json()
        assert deployed["stable"]["version"] == "1.1.0"
        assert deployed["canary"] is None
        history = (await app.client.get("/v1/models/task_judge/history", headers=OPERATOR)).json()
        assert history[0]["requested_by"] == "mlops"
        assert "canary bad-rate" in history[0]["reason"]


async def _canary(app) -> bool:
    response = await app.client.get("/v1/models/task_judge/canary", headers=OPERATOR)
    return response.json()["canary_samples"] > 0


async def test_deploys_that_make_no_sense_are_refused_with_a_reason(mlops_app):
    client = mlops_app.client
    await mlops_app.register("2.0.0", status="candidate")
    refused = await client.post("/v1/models/task_judge/deployments", json={"version": "2.0.0"}, headers=OPERATOR)
    assert refused.status_code == 409
    assert "verified" in refused.json()["detail"]
    missing = await client.post("/v1/models/task_judge/deployments", json={"version": "9.9.9"}, headers=OPERATOR)
    assert missing.status_code == 404
    for body in ({"version": "1.0.0", "canary_share": 0}, {"version": "../x"}, {"version": "1.0.0", "extra": 1}, {}):
        response = await client.post("/v1/models/task_judge/deployments", json=body, headers=OPERATOR)
        assert response.status_code == 422, (body, response.text)
    assert (
        await client.post("/v1/models/nope/deployments", json={"version": "1.0.0"}, headers=OPERATOR)
    ).status_code == 422
    assert (await client.post("/v1/models/task_judge/promote", headers=OPERATOR)).status_code == 409
    assert (await client.post("/v1/models/task_judge/rollback", json={}, headers=OPERATOR)).status_code == 409
    assert (await client.get(f"/v1/training-runs/{uuid.uuid4()}", headers=OPERATOR)).status_code == 404
    # Operators only (the deployed version excepted: instances read it as they start).
    for role in (Role.CUSTOMER, Role.HELPER, Role.BRANCH_OWNER, Role.DEVICE):
        response = await client.post(
            "/v1/models/task_judge/deployments", json={"version": "2.0.0"}, headers=bearer(role)
        )
        assert response.status_code == 403
    assert (await client.get("/v1/models")).status_code == 401
    assert (await client.get("/v1/models/task_judge/deployed")).status_code == 200


async def test_a_face_pack_in_another_embedding_space_needs_an_approved_reenrolment(mlops_app):
    await mlops_app.register("1.0.0", family="face", embedding_space="sface-128")
    await mlops_app.register("2.0.0", family="face", embedding_space="arcface-512")
    url = "/v1/models/face/deployments"
    assert (await mlops_app.client.post(url, json={"version": "1.0.0", "canary_share": 1}, headers=OPERATOR)).is_success
    refused = await mlops_app.client.post(url, json={"version": "2.0.0"}, headers=OPERATOR)
    assert refused.status_code == 422
    assert "re-enrolment" in refused.json()["detail"]
    approved = await mlops_app.client.post(
        url, json={"version": "2.0.0", "canary_share": 1, "reenrolment_approved": True}, headers=OPERATOR
    )
    assert approved.status_code == 201, approved.text
    await eventually(lambda: len(mlops_app.of(ModelDeployed)) == 2, timeout=10)
    event = mlops_app.of(ModelDeployed)[1]
    assert (event.embedding_space, event.reenrolment_approved) == ("arcface-512", True)
