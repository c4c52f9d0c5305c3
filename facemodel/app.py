"""facemodel's app factory: one FaceService shared by a Unix-socket app (access, trusted)
and a TCP app (tokens required)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from common.api import create_service_app
from common.kernel import build_kernel
from common.observability import Metrics
from common.security import JwksCache
from common.settings import PlatformSettings
from facemodel.api import router
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
) -> FastAPI:
    face_settings = FacemodelSettings.of(settings)
    metrics = metrics or Metrics()
    faces = faces or create_service(face_settings, metrics)
    kernel = build_kernel(SERVICE, face_settings, metadata=None, metrics=metrics, keys=keys)
    app = create_service_app(kernel, title="SmartGym facemodel", routers=[router])
    app.state.faces = faces
    app.state.trusted_transport = trusted_transport
    app.state.onnx_threads = face_settings.facemodel_onnx_threads
    return app


def create_listeners(
    settings: PlatformSettings, port: int, *, metrics: Metrics | None = None
) -> list[tuple[str, FastAPI, int | Path]]:
    """What ``smartgym serve facemodel`` (and ``up``) runs: one model, two doors — the
    pod-local Unix socket for access (trusted) and TCP for auth's enrolment and mlops (tokens)."""
    if not isinstance(settings, FacemodelSettings):
        settings = FacemodelSettings(**settings.model_dump())
    metrics = metrics or Metrics()
    faces = create_service(settings, metrics)
    settings.facemodel_socket.parent.mkdir(parents=True, exist_ok=True)
    return [
        ("facemodel", create_app(settings, faces=faces, metrics=metrics), port),
        (
            "facemodel-uds",
            create_app(settings, faces=faces, metrics=metrics, trusted_transport=True),
            settings.facemodel_socket,
        ),
    ]
