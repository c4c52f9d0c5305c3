"""mlops' app factory: the model registry, deployments and training runs API, and the
consumers of corrections and of instances' reports. Training itself runs in the worker
process (`smartgym serve mlops-worker`)."""

from __future__ import annotations

import asyncio
import logging

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
from mlops.events import Consumers, EmbeddedWorker, subscriptions
from mlops.models import Base
from mlops.packs import pack_store
from mlops.settings import MlopsSettings
from mlops.worker import declare_training_queue

SERVICE = "mlops"
log = logging.getLogger(__name__)


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
    embedded = EmbeddedWorker(config, kernel.db) if config.broker_url is None and config.mlops_embedded_worker else None
    kernel.subscriptions = subscriptions(Consumers(config), embedded)
    packs = packs or pack_store(config)

    async def declare_queue() -> None:
        # A job queued before any worker started must find its queue, not the unrouted one.
        try:
            await asyncio.to_thread(declare_training_queue, config)
        except Exception as exc:  # the worker declares it too when it starts
            log.warning("training queue not declared (%s); the worker will", type(exc).__name__)

    on_start = [declare_queue] + ([embedded.resume] if embedded else [])
    on_stop = [packs.close] + ([embedded.stop] if embedded else [])
    app = create_service_app(
        kernel,
        title="SmartGym mlops",
        routers=[router],
        on_start=on_start,
        on_stop=on_stop,
    )
    app.state.settings = config
    app.state.packs = packs
    return app
