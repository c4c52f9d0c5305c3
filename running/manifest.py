"""How the launcher finds running: see common.manifest."""

from common.manifest import ServiceManifest

MANIFEST = ServiceManifest(
    "running",
    port=8010,
    has_database=True,
    uses_bus=True,
    settings_class="running.settings:RunningSettings",
    start_order=60,
    extra_ports={"live": 8020},
)
