"""Model deployments reaching running facemodel instances over a real RabbitMQ: two
instances, each serving access's Unix socket, swap while identify traffic runs; bad packs
are refused and the old model keeps serving; rollback; canary share; catching up from the
registry after missing the event."""

from __future__ import annotations

import asyncio
import uuid
from contextlib import AsyncExitStack

import httpx
import pytest
from fastapi import FastAPI

from common.modelsync import canary_bucket
from contracts.models import ModelDeployed
from tests.support.apps import serving
from tests.support.modelpacks import (
    Instance,
    deployment,
    face_instance,
    face_instance_settings,
    registry_bus,
    store_pack,
)
from tests.support.waiting import eventually

pytestmark = pytest.mark.usefixtures("broker_cleanup")


async def enrol(target: Instance, photo_bytes: dict[str, bytes]) -> None:
    analysis = (
        await target.client.post(
            "/v1/analyse", content=photo_bytes["obama.jpg"], headers={"content-type": "image/jpeg"}
        )
    ).json()
    response = await target.client.put(
        "/v1/galleries/gate/subjects/member-obama",
        json={"embedding": analysis["embedding"], "embedding_space": "sface-2021dec"},
    )
    assert response.status_code == 204, response.text


async def versions(instances: list[Instance]) -> list[str]:
    return [(await item.client.get("/v1/models")).json()["active_version"] for item in instances]


@pytest.fixture
async def deployed(pack, photo_bytes, rabbitmq_url, namespace, tmp_path):
    """Two running instances serving the start pack (1.0.0), and the registry's bus."""
    async with AsyncExitStack() as stack:
        registry = await stack.enter_async_context(registry_bus(rabbitmq_url, namespace))
        instances = [
            await stack.enter_async_context(
                face_instance(
                    pack,
                    face_instance_settings(
                        name, rabbitmq_url=rabbitmq_url, namespace=namespace, root=tmp_path, model_signal_window_s=0.5
                    ),
                    tmp_path / f"{name}.sock",
                )
            )
            for name in ("gate-a", "gate-b")
        ]
        for item in instances:
            await enrol(item, photo_bytes)
        yield registry, instances


async def identify_until(stop: asyncio.Event, target: Instance, photo: bytes, outcomes: list[str]) -> None:
    while not stop.is_set():
        try:
            response = await target.client.post(
                "/v1/galleries/gate/identify", content=photo, headers={"content-type": "image/jpeg"}
            )
            body = response.json()
            ok = response.status_code == 200 and (body.get("match") or {}).get("subject") == "member-obama"
            outcomes.append("ok" if ok else f"{response.status_code}:{str(body)[:80]}")
        except httpx.HTTPError as exc:
            outcomes.append(type(exc).__name__)


async def test_deploy_under_traffic_rollback_and_canary_on_both(deployed, pack, photo_bytes, tmp_path):
    registry, instances = deployed
    files = store_pack(tmp_path / "store", pack, family="face", version="1.1.0")
    stop, outcomes = asyncio.Event(), []
    traffic = [
        asyncio.create_task(identify_until(stop, item, photo_bytes["obama2.jpg"], outcomes))
        for item in instances
        for _ in range(2)
    ]
    try:
        await asyncio.sleep(0.3)
        new = deployment("face", "1.1.0", files, embedding_space="sface-2021dec")
        await registry.publish(new)
        reports = await registry.reports_of(new.deployment_id)
        await asyncio.sleep(0.3)
    finally:
        stop.set()
        await asyncio.gather(*traffic)
    assert {r.outcome for r in reports.values()} == {"serving"}, reports
    assert set(reports) == {"facemodel@gate-a", "facemodel@gate-b"}
    assert all(r.active_version == "1.1.0" and r.swap_ms < 50 for r in reports.values())
    assert await versions(instances) == ["1.1.0", "1.1.0"]
    assert len(outcomes) >= 4
    assert [o for o in outcomes if o != "ok"] == []

    back = deployment("face", "1.0.0", files, action="rollback", previous_version="1.1.0")
    await registry.publish(back)
    reports = await registry.reports_of(back.deployment_id)
    assert {(r.outcome, r.active_version, r.load_ms) for r in reports.values()} == {("serving", "1.0.0", 0.0)}
    assert await versions(instances) == ["1.0.0", "1.0.0"]

    # A canary share: only the instance whose bucket is below it swaps; promotion takes all.
    files = store_pack(tmp_path / "store", pack, family="face", version="1.4.0")
    while True:  # a deployment id whose buckets put gate-a in the first half and gate-b out
        deployment_id = uuid.uuid4()
        if canary_bucket("facemodel@gate-a", deployment_id) < 0.5 <= canary_bucket("facemodel@gate-b", deployment_id):
            break
    canary = deployment("face", "1.4.0", files, canary_share=0.5, deployment_id=deployment_id)
    await registry.publish(canary)
    reports = await registry.reports_of(deployment_id)
    assert reports["facemodel@gate-a"].outcome == "serving"
    assert reports["facemodel@gate-b"].outcome == "not_selected"
    assert await versions(instances) == ["1.4.0", "1.0.0"]

    promote = deployment("face", "1.4.0", files, action="promote")
    await registry.publish(promote)
    reports = await registry.reports_of(promote.deployment_id)
    assert {r.outcome for r in reports.values()} == {"serving"}
    assert await versions(instances) == ["1.4.0", "1.4.0"]


async def test_bad_digest_and_failing_self_test_are_refused(deployed, pack, photo_bytes, tmp_path):
    registry, instances = deployed
    files = store_pack(tmp_path / "store", pack, family="face", version="1.2.0")
    tampered = tuple(
        file.model_copy(update={"sha256": "0" * 64}) if file.name == "recognizer.onnx" else file for file in files
    )
    bad_digest = deployment("face", "1.2.0", tampered)
    await registry.publish(bad_digest)
    reports = await registry.reports_of(bad_digest.deployment_id)
    assert {r.outcome for r in reports.values()} == {"refused"}
    assert all("sha256" in r.reason and r.active_version == "1.0.0" for r in reports.values())

    # A manifest that promises 64-d embeddings from a 128-d recogniser fails the self-test.
    broken = store_pack(
        tmp_path / "store", pack, family="face", version="1.3.0", manifest_changes={"embedding_dim": 64}
    )
    failing = deployment("face", "1.3.0", broken)
    await registry.publish(failing)
    reports = await registry.reports_of(failing.deployment_id)
    assert {r.outcome for r in reports.values()} == {"refused"}, reports
    assert all(r.active_version == "1.0.0" for r in reports.values())

    other_space = deployment("face", "1.2.0", files, embedding_space="arcface-r50")
    await registry.publish(other_space)
    reports = await registry.reports_of(other_space.deployment_id)
    assert {r.outcome for r in reports.values()} == {"refused"}
    assert all("re-enrolment" in r.reason for r in reports.values())

    assert await versions(instances) == ["1.0.0", "1.0.0"]
    for item in instances:  # the old model still answers
        response = await item.client.post(
            "/v1/galleries/gate/identify", content=photo_bytes["obama2.jpg"], headers={"content-type": "image/jpeg"}
        )
        assert response.json()["match"]["subject"] == "member-obama"
        stranger = await item.client.post(
            "/v1/galleries/gate/identify", content=photo_bytes["biden.jpg"], headers={"content-type": "image/jpeg"}
        )
        assert stranger.json()["match"] is None

    # The live signal: identifications per model version, a stranger counted as rejected
    # (the two may fall in different windows: the sums are what counts).
    def totals(instance_id: str) -> tuple[int, int]:
        windows = [s for s in registry.signals if s.instance_id == instance_id and s.version == "1.0.0"]
        return sum(s.samples for s in windows), sum(s.bad for s in windows)

    names = ("facemodel@gate-a", "facemodel@gate-b")
    await eventually(lambda: all(totals(name) == (2, 1) for name in names), timeout=20)  # enrolment is not counted


def fake_registry(current: ModelDeployed, asked: list[str]) -> FastAPI:
    """mlops' deployed-version route, answering with ``current`` as the stable deployment."""
    app = FastAPI()

    @app.get("/v1/models/{family}/deployed")
    async def deployed_version(family: str) -> dict[str, object]:
        asked.append(family)
        return {"family": family, "stable": current.model_dump(mode="json"), "canary": None}

    return app


async def test_an_instance_started_after_the_deploy_catches_up_from_the_registry(
    pack, rabbitmq_url, namespace, tmp_path
):
    files = store_pack(tmp_path / "store", pack, family="face", version="2.0.0")
    current = deployment("face", "2.0.0", files)
    asked: list[str] = []
    registry_app = fake_registry(current, asked)
    async with registry_bus(rabbitmq_url, namespace) as registry, serving(registry_app) as registry_url:
        settings = face_instance_settings(
            "late", rabbitmq_url=rabbitmq_url, namespace=namespace, root=tmp_path, model_registry_url=registry_url
        )
        async with face_instance(pack, settings, tmp_path / "late.sock") as late:
            reports = await registry.reports_of(current.deployment_id, count=1)
            assert reports["facemodel@late"].outcome == "serving"
            assert await versions([late]) == ["2.0.0"]
            assert asked == ["face"]
