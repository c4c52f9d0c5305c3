"""How the launcher finds monitoring: see common.manifest."""

from common.manifest import ServiceManifest

MANIFEST = ServiceManifest(
    "monitoring",
    port=8007,
    has_database=True,
    uses_bus=True,
    settings_class="monitoring.settings:MonitoringSettings",
    start_order=20,
    extra_ports={"heartbeat": 7007},
)
