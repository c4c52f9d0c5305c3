"""Which services exist, on which port, and in which order they start."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from fastapi import FastAPI

from common.events.bus import EventBus
from common.observability import Metrics
from common.settings import PlatformSettings

# The port plan of the whole platform (embedded mode and the Helm chart use the same).
PORTS: dict[str, int] = {
    "gateway": 8000,
    "auth": 8001,
    "access": 8002,
    "facemodel": 8003,
    "helper": 8004,
    "branch_owner": 8005,
    "search": 8006,
    "monitoring": 8007,
    "notification": 8008,
    "mlops": 8009,
    "running": 8010,
    # Not a service: the local stand-in of the card identity-check partner (embedded mode).
    "cardcheck_sim": 8011,
    "fcm_sim": 8012,
    "running_live": 8020,
}


class AppFactory(Protocol):
    def __call__(self, settings: Any, **kwargs: Any) -> FastAPI: ...


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    has_database: bool
    uses_bus: bool
    settings_class: str = "common.settings:PlatformSettings"
    # Part of `smartgym up`? facemodel needs the `face` extra and a model pack.
    embedded: bool = True

    @property
    def port(self) -> int:
        return PORTS[self.name]

    def settings_type(self) -> type[PlatformSettings]:
        module, _, attribute = self.settings_class.partition(":")
        settings_type: type[PlatformSettings] = getattr(importlib.import_module(module), attribute)
        return settings_type

    def listeners(self, settings: PlatformSettings, port: int) -> list[tuple[str, FastAPI, int | Path]]:
        """What ``smartgym serve`` runs for this service: one app on its port, unless the
        service's app module says otherwise with ``create_listeners`` (facemodel also
        listens on a Unix socket)."""
        module = importlib.import_module(f"{self.name}.app")
        custom = getattr(module, "create_listeners", None)
        if custom is not None:
            listeners: list[tuple[str, FastAPI, int | Path]] = custom(settings, port)
            return listeners
        return [(self.name, self.create_app(settings), port)]

    def create_app(
        self, settings: PlatformSettings, *, bus: EventBus | None = None, metrics: Metrics | None = None
    ) -> FastAPI:
        factory: AppFactory = importlib.import_module(f"{self.name}.app").create_app
        if self.uses_bus:
            return factory(settings, bus=bus, metrics=metrics)
        return factory(settings, metrics=metrics)


# Start order: consumers before the producers whose events they take, the gateway last;
# shutdown runs in reverse, so producers flush their outbox while consumers still listen.
SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec(
        "notification", has_database=True, uses_bus=True, settings_class="notification.settings:NotificationSettings"
    ),
    ServiceSpec(
        "monitoring", has_database=True, uses_bus=True, settings_class="monitoring.settings:MonitoringSettings"
    ),
    ServiceSpec("auth", has_database=True, uses_bus=True, settings_class="auth.settings:AuthSettings"),
    ServiceSpec(
        "facemodel",
        has_database=False,
        uses_bus=False,
        settings_class="facemodel.settings:FacemodelSettings",
        embedded=False,
    ),
    # With its facemodel sidecar (same pod): not part of `up`, like facemodel itself.
    ServiceSpec(
        "access",
        has_database=True,
        uses_bus=True,
        settings_class="access.settings:AccessSettings",
        embedded=False,
    ),
    ServiceSpec("running", has_database=True, uses_bus=True, settings_class="running.settings:RunningSettings"),
    ServiceSpec("gateway", has_database=False, uses_bus=False, settings_class="gateway.settings:GatewaySettings"),
)


def spec(name: str) -> ServiceSpec:
    for candidate in SERVICES:
        if candidate.name == name:
            return candidate
    known = ", ".join(item.name for item in SERVICES)
    raise KeyError(f"unknown service {name!r} (known: {known})")
