"""Model packs put into a directory model store the way the registry lays them out
(``models/<family>/<version>/<file>``), and the ``ModelDeployed`` that names them."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from common.events.bus import EventBus
from common.events.envelope import Event, OutgoingMessage, utc_now
from common.kernel import make_bus
from common.observability import Metrics
from common.settings import PlatformSettings
from contracts import CATALOG
from contracts.models import ModelDeployed, ModelSignalReported, ModelSwapReported, PackFile
from facemodel.app import create_app
from facemodel.engine import FaceEngine
from facemodel.holder import ModelHolder
from facemodel.service import FaceService
from facemodel.settings import FacemodelSettings
from tests.support import tokens
from tests.support.apps import asgi_client, serving
from tests.support.waiting import eventually


def store_pack(
    store_dir: Path, pack: Path, *, family: str, version: str, manifest_changes: dict[str, Any] | None = None
) -> tuple[PackFile, ...]:
    """Copy ``pack`` into the store as ``version`` (its manifest's version set to it when
    it is a semantic version, plus ``manifest_changes``); the files as a deployment names them."""
    target = store_dir / "models" / family / version
    target.mkdir(parents=True, exist_ok=True)
    files = []
    for source in sorted(pack.iterdir()):
        data = source.read_bytes()
        if source.name == "manifest.json":
            manifest = json.loads(data)
            if version.count(".") == 2 and version.replace(".", "").isdigit():
                manifest["version"] = version
            manifest.update(manifest_changes or {})
            data = json.dumps(manifest, indent=2).encode()
        (target / source.name).write_bytes(data)
        files.append(
            PackFile(
                name=source.name,
                key=f"models/{family}/{version}/{source.name}",
                sha256=hashlib.sha256(data).hexdigest(),
                size_bytes=len(data),
            )
        )
    return tuple(files)


def deployment(
    family: str,
    version: str,
    files: tuple[PackFile, ...],
    *,
    action: str = "deploy",
    canary_share: float = 1.0,
    deployment_id: uuid.UUID | None = None,
    **extra: Any,
) -> ModelDeployed:
    return ModelDeployed(
        deployment_id=deployment_id or uuid.uuid4(),
        family=family,
        version=version,
        action=action,
        canary_share=canary_share,
        files=files,
        deployed_at=utc_now(),
        **extra,
    )


@dataclass
class Instance:
    name: str
    faces: FaceService
    client: httpx.AsyncClient


@dataclass
class Registry:
    """The test's side of mlops: publishes deployments, hears the reports."""

    bus: EventBus
    reports: list[ModelSwapReported]
    signals: list[ModelSignalReported]
    deployed: list[ModelDeployed]

    async def publish(self, event: ModelDeployed) -> None:
        await self.bus.publish_many([OutgoingMessage.of(event)])

    async def publish_event(self, event: Event) -> None:
        await self.bus.publish_many([OutgoingMessage.of(event)])

    async def reports_of(self, deployment_id: uuid.UUID, count: int = 2) -> dict[str, ModelSwapReported]:
        async def arrived() -> bool:
            return len({r.instance_id for r in self.reports if r.deployment_id == deployment_id}) >= count

        await eventually(arrived, timeout=60)
        return {r.instance_id: r for r in self.reports if r.deployment_id == deployment_id}


def face_instance_settings(
    name: str, *, rabbitmq_url: str, namespace: str, root: Path, **extra: Any
) -> FacemodelSettings:
    return FacemodelSettings(
        environment="test",
        broker_url=rabbitmq_url,
        bus_namespace=namespace,
        model_instance_id=name,
        model_store_dir=root / "store",
        model_local_dir=root / name,
        **extra,
    )


@asynccontextmanager
async def face_instance(pack: Path, settings: FacemodelSettings, socket_path: Path) -> AsyncIterator[Instance]:
    """One facemodel instance as in a pod: the app following deployments (its lifespan
    runs; nobody calls its TCP side here) and access's Unix-socket app, one model."""
    faces = FaceService(ModelHolder(FaceEngine(pack)), workers=2)
    following = create_app(settings, faces=faces)
    socket_app = create_app(settings, faces=faces, trusted_transport=True, follow_models=False)
    try:
        async with following.router.lifespan_context(following), serving(socket_app, uds=str(socket_path)):
            transport = httpx.AsyncHTTPTransport(uds=str(socket_path))
            async with httpx.AsyncClient(transport=transport, base_url="http://facemodel", timeout=30) as client:
                yield Instance(str(settings.model_instance_id), faces, client)
    finally:
        faces.close()


@asynccontextmanager
async def registry_bus(rabbitmq_url: str, namespace: str) -> AsyncIterator[Registry]:
    bus = make_bus(PlatformSettings(broker_url=rabbitmq_url, bus_namespace=namespace), Metrics(), CATALOG)
    await bus.start()
    reports: list[ModelSwapReported] = []
    signals: list[ModelSignalReported] = []
    deployed: list[ModelDeployed] = []

    seen: set[uuid.UUID] = set()

    async def record(event: Event) -> None:
        # At least once: a relay may publish an event twice (replicas sharing an outbox).
        if event.event_id in seen:
            return
        seen.add(event.event_id)
        if isinstance(event, ModelSwapReported):
            reports.append(event)
        elif isinstance(event, ModelSignalReported):
            signals.append(event)
        elif isinstance(event, ModelDeployed):
            deployed.append(event)

    await bus.broadcast([ModelSwapReported, ModelSignalReported, ModelDeployed], record)
    try:
        yield Registry(bus, reports, signals, deployed)
    finally:
        await bus.close()


@asynccontextmanager
async def helper_replica(
    name: str, *, root: Path, rabbitmq_url: str, namespace: str, **extra: Any
) -> AsyncIterator[httpx.AsyncClient]:
    """One running helper replica (its database under ``root``, shared by replicas) that
    follows task-judge deployments from the store under ``root/model-packs``."""
    from helper.app import create_app as create_helper
    from helper.settings import HelperSettings

    settings = HelperSettings(
        environment="test",
        data_dir=root,
        broker_url=rabbitmq_url,
        bus_namespace=namespace,
        outbox_poll_interval_s=0.05,
        model_instance_id=name,
        model_local_dir=root / name,
        **extra,
    )
    app = create_helper(settings, keys=tokens.key_cache())
    async with asgi_client(app) as client:
        yield client
