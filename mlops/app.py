"""mlops' app factory: the model registry, deployments and training runs API, and the
consumers of corrections and of instances' reports. Training itself runs in the worker
process (`smartgym serve mlops-worker`)."""

from __future__ import annotations

from fastapi import FastAPI

from common.api import create_service_app
from common.events.bus import EventBus
from common.kernel import build_kernel
from common.objectstore import ObjectStore
from common.observability import Metrics
from common.security import JwksCache
from common.settings import PlatformSettings
from contracts import CATALOG
from mlops.api import router
from mlops.events import Consumers, subscriptions
from mlops.models import Base
from mlops.packs import pack_store
from mlops.settings import MlopsSettings

SERVICE = "mlops"


def create_app(
    settings: PlatformSettings,
    *,
    bus: EventBus | None = None,
    metrics: Metrics | None = None,
    keys: JwksCache | None = None,
    packs: ObjectStore | None = None,
) -> FastAPI:
    config = MlopsSettings.of(settings)
    kernel = build_kernel(SERVICE, config, metadata=Base.metadata, catalog=CATALOG, bus=bus, metrics=metrics, keys=keys)
    kernel.subscriptions = subscriptions(Consumers(config))
    packs = packs or pack_store(config)
    app = create_service_app(kernel, title="SmartGym mlops", routers=[router], on_stop=[packs.close])
    app.state.settings = config
    app.state.packs = packs
    return app
