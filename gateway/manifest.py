"""How the launcher finds gateway: see common.manifest."""

from common.manifest import ServiceManifest

MANIFEST = ServiceManifest(
    "gateway",
    port=8000,
    has_database=False,
    uses_bus=False,
    settings_class="gateway.settings:GatewaySettings",
    start_order=100,
)
