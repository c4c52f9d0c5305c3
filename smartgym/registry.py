"""Which services exist, on which port, and in which order they start."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Protocol

from fastapi import FastAPI

from common.events.bus import EventBus
from common.manifest import ENTRY_POINT_GROUP, ServiceManifest
from common.observability import Metrics
from common.settings import PlatformSettings


class AppFactory(Protocol):
    def __call__(self, settings: Any, **kwargs: Any) -> FastAPI: ...


@dataclass(frozen=True)
class ServiceSpec:
    """A discovered service: its manifest plus what the launcher does with it."""

    manifest: ServiceManifest

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def port(self) -> int:
        return self.manifest.port

    @property
    def has_database(self) -> bool:
        return self.manifest.has_database

    @property
    def uses_bus(self) -> bool:
        return self.manifest.uses_bus

    @property
    def embedded(self) -> bool:
        return self.manifest.embedded

    def settings_type(self) -> type[PlatformSettings]:
        module, _, attribute = self.manifest.settings_class.partition(":")
        settings_type: type[PlatformSettings] = getattr(importlib.import_module(module), attribute)
        return settings_type

    def listeners(
        self,
        settings: PlatformSettings,
        port: int,
        *,
        bus: EventBus | None = None,
        metrics: Metrics | None = None,
    ) -> list[tuple[str, FastAPI, int | Path]]:
        """What this service listens on: one app on its port, unless the service's app
        module says otherwise with ``create_listeners`` (facemodel also listens on a Unix
        socket). ``bus``/``metrics`` are shared by every service of one process."""
        module = importlib.import_module(f"{self.name}.app")
        custom = getattr(module, "create_listeners", None)
        if custom is not None:
            extra = {"bus": bus} if self.uses_bus else {}
            listeners: list[tuple[str, FastAPI, int | Path]] = custom(settings, port, metrics=metrics, **extra)
            return listeners
        return [(self.name, self.create_app(settings, bus=bus, metrics=metrics), port)]

    def create_app(
        self, settings: PlatformSettings, *, bus: EventBus | None = None, metrics: Metrics | None = None
    ) -> FastAPI:
        factory: AppFactory = importlib.import_module(f"{self.name}.app").create_app
        if self.uses_bus:
            return factory(settings, bus=bus, metrics=metrics)
        return factory(settings, metrics=metrics)


def discover() -> tuple[ServiceSpec, ...]:
    """Every installed service (entry points of ``smartgym.services``), in start order:
    consumers before the producers whose events they take, the gateway last; shutdown runs
    in reverse, so producers flush their outbox while consumers still listen."""
    found: list[ServiceSpec] = []
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        manifest = entry.load()
        if not isinstance(manifest, ServiceManifest) or manifest.name != entry.name:
            raise TypeError(f"entry point {entry.name!r} must name that service's ServiceManifest")
        found.append(ServiceSpec(manifest))
    found.sort(key=lambda item: (item.manifest.start_order, item.name))
    return tuple(found)


SERVICES: tuple[ServiceSpec, ...] = discover()


def ports(port_offset: int = 0) -> dict[str, int]:
    """The port plan (embedded mode and the Helm chart use the same): every service's
    port, its extra listeners as ``service_name`` and its partner stand-ins, offset."""
    plan: dict[str, int] = {}
    for service in SERVICES:
        plan[service.name] = service.port + port_offset
        for listener, port in service.manifest.extra_ports.items():
            plan[f"{service.name}_{listener}"] = port + port_offset
        for stand_in, port in service.manifest.stand_ins.items():
            plan[stand_in] = port + port_offset
    return plan


PORTS: dict[str, int] = ports()


def process(name: str) -> tuple[ServiceSpec, Callable[[], int]] | None:
    """The extra process ``<service>-<process>`` (see ``ServiceManifest.processes``), or None."""
    for candidate in SERVICES:
        for process_name, target in candidate.manifest.processes.items():
            if name == f"{candidate.name}-{process_name}":
                module, _, attribute = target.partition(":")
                run: Callable[[], int] = getattr(importlib.import_module(module), attribute)
                return candidate, run
    return None


def spec(name: str) -> ServiceSpec:
    for candidate in SERVICES:
        if candidate.name == name:
            return candidate
    known = ", ".join(item.name for item in SERVICES)
    raise KeyError(f"unknown service {name!r} (known: {known})")
