"""How the launcher finds access: see common.manifest."""

from common.manifest import ServiceManifest

MANIFEST = ServiceManifest(
    "access",
    port=8002,
    has_database=True,
    uses_bus=True,
    settings_class="access.settings:AccessSettings",
    start_order=50,
)
