"""How a service declares itself to the launcher: name, ports, database, bus, settings.

Each service package holds a ``manifest.py`` with one :class:`ServiceManifest` and names it
under the ``smartgym.services`` entry-point group in ``pyproject.toml``; the launcher finds
services there, so adding one touches neither the kernel nor the launcher.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ServiceManifest:
    name: str
    port: int
    has_database: bool
    uses_bus: bool
    # "package.module:Class" of the service's settings (a PlatformSettings subclass).
    settings_class: str = "common.settings:PlatformSettings"
    # Part of `smartgym up`?
    embedded: bool = True
    # Start order in one process: consumers before the producers whose events they take,
    # the gateway last; shutdown runs in reverse.
    start_order: int = 50
    # Further listeners of the service, e.g. {"live": 8020}.
    extra_ports: Mapping[str, int] = field(default_factory=dict)
    # Local stand-ins of external partners the launcher may start beside it in embedded
    # mode: name -> port (the service's app module knows how to build them).
    stand_ins: Mapping[str, int] = field(default_factory=dict)
    # "package.module:attribute" of a click command group the service adds to the
    # `smartgym` command line (operator commands such as `smartgym search reindex`).
    commands: str | None = None
    # Further processes of the service that are not HTTP listeners, run as
    # `smartgym serve <service>-<name>`: name -> "package.module:function" (a function of
    # no arguments returning an exit code), e.g. a CPU-bound worker.
    processes: Mapping[str, str] = field(default_factory=dict)


ENTRY_POINT_GROUP = "smartgym.services"


def installed_manifests() -> list[ServiceManifest]:
    """The manifests of every service installed beside this one (the entry points of
    ``smartgym.services``), by name: what an operator tool may list without the kernel
    naming any service."""
    from importlib.metadata import entry_points

    found = []
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        manifest = entry.load()
        if isinstance(manifest, ServiceManifest):
            found.append(manifest)
    return sorted(found, key=lambda item: item.name)
