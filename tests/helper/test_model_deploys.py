"""Task-judge deployments reaching two running helper replicas over a real RabbitMQ: both
swap, a bad pack is refused and the old model keeps serving, a rollback swaps back
without loading anything."""

from __future__ import annotations

import uuid
from contextlib import AsyncExitStack

import httpx
import pytest

from common.migrations import upgrade
from common.security import Role
from helper.classifier import write_pack
from helper.settings import HelperSettings
from tests.helper.test_stores_and_models import brightness_model
from tests.support import tokens
from tests.support.modelpacks import deployment, helper_replica, registry_bus, store_pack

pytestmark = pytest.mark.usefixtures("broker_cleanup")


def operator() -> dict[str, str]:
    # Issued when used: a token made at import would expire before a long suite reaches it.
    return tokens.bearer(uuid.uuid4(), [Role.OPERATOR])


async def served(replicas: list[httpx.AsyncClient]) -> list[str]:
    return [(await client.get("/v1/judge/model", headers=operator())).json()["model_version"] for client in replicas]


async def test_two_replicas_swap_refuse_and_roll_back(rabbitmq_url, namespace, tmp_path):
    upgrade("helper", HelperSettings(environment="test", data_dir=tmp_path).database_url("helper"))
    packs = {}
    for version, gain in (("1.0.0", 40.0), ("1.1.0", 20.0)):
        source = write_pack(
            tmp_path / "src" / version,
            brightness_model(gain, 0.2),
            name="done",
            version=version,
            input_name="x",
            size=32,
        )
        packs[version] = store_pack(tmp_path / "model-packs", source, family="task_judge", version=version)
    async with AsyncExitStack() as stack:
        registry = await stack.enter_async_context(registry_bus(rabbitmq_url, namespace))
        replicas = [
            await stack.enter_async_context(
                helper_replica(name, root=tmp_path, rabbitmq_url=rabbitmq_url, namespace=namespace)
            )
            for name in ("judge-a", "judge-b")
        ]
        assert await served(replicas) == ["none", "none"]
        for version in ("1.0.0", "1.1.0"):
            event = deployment("task_judge", version, packs[version])
            await registry.publish(event)
            reports = await registry.reports_of(event.deployment_id)
            assert {(r.outcome, r.active_version) for r in reports.values()} == {("serving", version)}, reports
        assert await served(replicas) == ["1.1.0", "1.1.0"]

        tampered = tuple(
            file.model_copy(update={"size_bytes": file.size_bytes + 1}) if file.name == "model.onnx" else file
            for file in packs["1.0.0"]
        )
        bad = deployment("task_judge", "1.2.0", tampered)
        await registry.publish(bad)
        reports = await registry.reports_of(bad.deployment_id)
        assert {(r.outcome, r.active_version) for r in reports.values()} == {("refused", "1.1.0")}
        assert all("bytes" in r.reason for r in reports.values())

        back = deployment("task_judge", "1.0.0", packs["1.0.0"], action="rollback", previous_version="1.1.0")
        await registry.publish(back)
        reports = await registry.reports_of(back.deployment_id)
        assert {(r.outcome, r.active_version, r.load_ms) for r in reports.values()} == {("serving", "1.0.0", 0.0)}
        assert await served(replicas) == ["1.0.0", "1.0.0"]
