"""facemodel's app factory: one FaceService shared by a Unix-socket app (access, trusted)
and a TCP app (tokens required); the TCP app also follows model deployments."""

from __future__ import annotations

import functools
from pathlib import Path

from fastapi import FastAPI

from common.api import Hook, create_service_app
from common.events.bus import EventBus
from common.kernel import build_kernel
from common.modelsync import ModelFollower, SignalWindow, bus_publisher, registry_source
from common.objectstore import ObjectStore
from common.observability import Metrics
from common.security import JwksCache
from common.settings import PlatformSettings
from contracts import CATALOG
from facemodel.api import router
from facemodel.deploys import FAMILY, FaceModelServer
from facemodel.engine import FaceEngine
from facemodel.holder import ModelHolder
from facemodel.metrics import FaceMetrics
from facemodel.service import FaceService
from facemodel.settings import FacemodelSettings

SERVICE = "facemodel"


def create_service(settings: FacemodelSettings, metrics: Metrics) -> FaceService:
    engine = FaceEngine(settings.facemodel_pack, threads=settings.facemodel_onnx_threads)
    return FaceService(ModelHolder(engine), workers=settings.facemodel_workers, metrics=FaceMetrics(metrics.registry))


def create_app(
    settings: PlatformSettings,
    *,
    metrics: Metrics | None = None,
    faces: FaceService | None = None,
    trusted_transport: bool = False,
    keys: JwksCache | None = None,
    bus: EventBus | None = None,
    follow_models: bool = True,
) -> FastAPI:
    """``follow_models``: this app hears ``ModelDeployed`` and swaps the model (one app per
    FaceService does; the socket app beside it shares the same model)."""
    face_settings = FacemodelSettings.of(settings)
    metrics = metrics or Metrics()
    faces = faces or create_service(face_settings, metrics)
    catalog = CATALOG if follow_models else None
    kernel = build_kernel(
        SERVICE,
        face_settings,
        metadata=None,
        metrics=metrics,
        keys=keys,
        bus=bus,
        catalog=catalog,
        ready_without_bus=True,
    )
    on_start: list[Hook] = [faces.warm]
    on_stop: list[Hook] = []
    follower: ModelFollower | None = None
    if follow_models and kernel.bus is not None:
        follower, signal, store = _model_following(face_settings, faces, kernel.bus)
        faces.on_identified = lambda version, matched: signal.record(version, bad=not matched)
        on_start += [functools.partial(follower.follow, kernel.bus), signal.start]
        on_stop += [store.close, follower.close, signal.stop]
    app = create_service_app(kernel, title="SmartGym facemodel", routers=[router], on_start=on_start, on_stop=on_stop)
    app.state.faces = faces
    app.state.trusted_transport = trusted_transport
    app.state.onnx_threads = face_settings.facemodel_onnx_threads
    app.state.model_follower = follower
    return app


def _model_following(
    settings: FacemodelSettings, faces: FaceService, bus: EventBus
) -> tuple[ModelFollower, SignalWindow, ObjectStore]:
    instance_id = settings.instance_id(SERVICE)
    publish = bus_publisher(bus)
    store = settings.pack_store()
    registry = settings.model_registry_url
    follower = ModelFollower(
        server=FaceModelServer(faces, threads=settings.facemodel_onnx_threads),
        instance_id=instance_id,
        store=store,
        local_dir=settings.local_pack_dir(),
        publish=publish,
        deployed=registry_source(registry, FAMILY, timeout_s=settings.http_timeout_s) if registry else None,
    )
    signal = SignalWindow(
        family=FAMILY, instance_id=instance_id, window_s=settings.model_signal_window_s, publish=publish
    )
    return follower, signal, store


def create_listeners(
    settings: PlatformSettings, port: int, *, metrics: Metrics | None = None, bus: EventBus | None = None
) -> list[tuple[str, FastAPI, int | Path]]:
    """What ``smartgym serve facemodel`` (and ``up``) runs: one model, two doors — the
    pod-local Unix socket for access (trusted) and TCP for auth's enrolment and mlops (tokens)."""
    if not isinstance(settings, FacemodelSettings):
        settings = FacemodelSettings(**settings.model_dump())
    metrics = metrics or Metrics()
    faces = create_service(settings, metrics)
    settings.facemodel_socket.parent.mkdir(parents=True, exist_ok=True)
    return [
        ("facemodel", create_app(settings, faces=faces, metrics=metrics, bus=bus), port),
        (
            "facemodel-uds",
            create_app(settings, faces=faces, metrics=metrics, trusted_transport=True, follow_models=False),
            settings.facemodel_socket,
        ),
    ]
