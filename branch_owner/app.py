"""branch_owner's app factory: profiles, the review queue and its SLA, reviews, preferences."""

from __future__ import annotations

from datetime import timedelta

from fastapi import FastAPI

from branch_owner import queue
from branch_owner.api import router
from branch_owner.events import subscriptions
from branch_owner.models import Base
from branch_owner.photos import photo_store
from branch_owner.preferences import Preferences
from branch_owner.settings import BranchOwnerSettings
from common.api import create_service_app
from common.events.bus import EventBus
from common.kernel import build_kernel
from common.observability import Metrics
from common.periodic import Periodic
from common.security import JwksCache
from common.settings import PlatformSettings
from contracts import CATALOG

SERVICE = "branch_owner"


def create_app(
    settings: PlatformSettings,
    *,
    bus: EventBus | None = None,
    metrics: Metrics | None = None,
    keys: JwksCache | None = None,
) -> FastAPI:
    config = BranchOwnerSettings.of(settings)
    kernel = build_kernel(SERVICE, config, metadata=Base.metadata, catalog=CATALOG, bus=bus, metrics=metrics, keys=keys)
    preferences = Preferences(config, is_sqlite=kernel.db.is_sqlite)
    kernel.subscriptions = subscriptions(preferences)
    sla = timedelta(seconds=config.review_sla_s)

    async def remind() -> None:
        await queue.remind_overdue(kernel, sla=sla)

    reminders = Periodic("review-sla", config.review_sla_check_interval_s, remind)
    store = photo_store(config)
    app = create_service_app(
        kernel,
        title="SmartGym branch_owner",
        routers=[router],
        on_start=[reminders.start],
        on_stop=[reminders.stop, store.close],
    )
    app.state.settings = config
    app.state.photo_store = store
    app.state.preferences = preferences
    return app
