"""notification's app factory."""

from __future__ import annotations

from fastapi import FastAPI

from common.api import create_service_app
from common.events.bus import EventBus
from common.kernel import build_kernel
from common.observability import Metrics
from common.settings import PlatformSettings
from notification.api import router
from notification.events import subscriptions
from notification.models import Base

SERVICE = "notification"


def create_app(settings: PlatformSettings, *, bus: EventBus | None = None, metrics: Metrics | None = None) -> FastAPI:
    kernel = build_kernel(
        SERVICE, settings, metadata=Base.metadata, subscriptions=subscriptions(), bus=bus, metrics=metrics
    )
    return create_service_app(kernel, title="SmartGym notification", routers=[router])
