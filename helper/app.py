"""helper's app factory: task intake, the task judge, the reward ledger and the helper API."""

from __future__ import annotations

import functools
import logging

from fastapi import FastAPI

from common.api import create_service_app
from common.events.bus import EventBus
from common.events.envelope import Event
from common.kernel import ServiceKernel, build_kernel
from common.modelsync import ModelFollower, SignalWindow, registry_source
from common.objectstore import ObjectStore
from common.observability import Metrics
from common.security import JwksCache
from common.settings import PlatformSettings
from contracts import CATALOG
from helper.api import router
from helper.classifier import ClassifierHolder, PackError
from helper.deploys import FAMILY, OverrideSignal, TaskJudgeServer
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
    follower, signal, pack_store = _model_following(config, kernel, classifier)
    kernel.subscriptions = subscriptions(judge, Ledger(kernel.db), OverrideSignal(signal))
    bus = kernel.bus
    assert bus is not None  # helper has a database, so the kernel gave it a bus
    app = create_service_app(
        kernel,
        title="SmartGym helper",
        routers=[router],
        on_start=[functools.partial(follower.follow, bus), signal.start],
        on_stop=[store.close, pack_store.close, follower.close, signal.stop],
    )
    app.state.settings = config
    app.state.photo_store = store
    app.state.classifier = classifier
    app.state.model_follower = follower
    return app


def _model_following(
    config: HelperSettings, kernel: ServiceKernel, classifier: ClassifierHolder
) -> tuple[ModelFollower, SignalWindow, ObjectStore]:
    """The task judge follows model deployments; its reports go out through the outbox."""

    async def publish(event: Event) -> None:
        async with kernel.unit_of_work() as uow:
            uow.emit(event)

    instance_id = config.instance_id(SERVICE)
    registry = config.model_registry_url
    pack_store = config.pack_store()
    follower = ModelFollower(
        server=TaskJudgeServer(classifier),
        instance_id=instance_id,
        store=pack_store,
        local_dir=config.local_pack_dir(),
        publish=publish,
        deployed=registry_source(registry, FAMILY, timeout_s=config.http_timeout_s) if registry else None,
    )
    signal = SignalWindow(
        family=FAMILY, instance_id=instance_id, window_s=config.model_signal_window_s, publish=publish
    )
    return follower, signal, pack_store
