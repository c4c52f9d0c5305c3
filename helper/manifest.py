"""How the launcher finds helper: see common.manifest."""

from common.manifest import ServiceManifest

MANIFEST = ServiceManifest(
    "helper",
    port=8004,
    has_database=True,
    uses_bus=True,
    settings_class="helper.settings:HelperSettings",
    # Consumes branch_owner's TaskConfirmed; starts before it.
    start_order=42,
)
