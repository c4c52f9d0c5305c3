"""helper's app factory: task intake, the task judge, the reward ledger and the helper API."""

from __future__ import annotations

import logging

from fastapi import FastAPI

from common.api import create_service_app
from common.events.bus import EventBus
from common.kernel import build_kernel
from common.observability import Metrics
from common.security import JwksCache
from common.settings import PlatformSettings
from contracts import CATALOG
from helper.api import router
from helper.classifier import ClassifierHolder, PackError
from helper.events import subscriptions
from helper.judge import TaskJudge
from helper.ledger import Ledger
from helper.models import Base
from helper.settings import HelperSettings
from helper.store import PhotoStore, photo_store

SERVICE = "helper"
log = logging.getLogger(__name__)


def create_app(
    settings: PlatformSettings,
    *,
    bus: EventBus | None = None,
    metrics: Metrics | None = None,
    keys: JwksCache | None = None,
    store: PhotoStore | None = None,
    classifier: ClassifierHolder | None = None,
) -> FastAPI:
    config = HelperSettings.of(settings)
    kernel = build_kernel(SERVICE, config, metadata=Base.metadata, catalog=CATALOG, bus=bus, metrics=metrics, keys=keys)
    store = store or photo_store(config)
    if classifier is None:
        classifier = ClassifierHolder()
        if config.judge_model_pack is not None:
            try:
                classifier.deploy(config.judge_model_pack)
            except PackError as exc:
                # The judge still runs its measured checks; the learned part waits.
                log.error("task classifier pack refused: %s", exc.reason)
    judge = TaskJudge(settings=config, store=store, classifier=classifier)
    kernel.subscriptions = subscriptions(judge, Ledger(kernel.db))
    app = create_service_app(kernel, title="SmartGym helper", routers=[router], on_stop=[store.close])
    app.state.settings = config
    app.state.photo_store = store
    app.state.classifier = classifier
    return app
