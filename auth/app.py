"""auth's app factory."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from argon2 import PasswordHasher
from fastapi import FastAPI

from auth.api import router
from auth.keys import KeyRing
from auth.models import Base
from auth.service import AccountService
from common.api import create_service_app
from common.events.bus import EventBus
from common.kernel import build_kernel
from common.observability import Metrics
from common.security import JwksCache
from common.settings import PlatformSettings

SERVICE = "auth"


def create_app(
    settings: PlatformSettings,
    *,
    bus: EventBus | None = None,
    metrics: Metrics | None = None,
    hasher: PasswordHasher | None = None,
) -> FastAPI:
    # auth verifies its own tokens from its key ring, never over HTTP. The ring needs the
    # kernel's database and the kernel's verifier needs the ring: the fetch closure reads
    # the ring once both exist.
    async def own_jwks() -> Mapping[str, Any]:
        return keys.jwks()

    kernel = build_kernel(
        SERVICE,
        settings,
        metadata=Base.metadata,
        bus=bus,
        metrics=metrics,
        keys=JwksCache(own_jwks, min_refresh_interval_s=1.0),
    )
    keys = KeyRing(kernel.db, settings.key_encryption_secret.get_secret_value().encode())
    app = create_service_app(kernel, title="SmartGym auth", routers=[router], on_start=[keys.load])
    app.state.keys = keys
    app.state.accounts = AccountService(kernel=kernel, keys=keys, hasher=hasher or PasswordHasher())
    return app
