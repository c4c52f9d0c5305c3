"""How the launcher finds auth: see common.manifest."""

from common.manifest import ServiceManifest

MANIFEST = ServiceManifest(
    "auth",
    port=8001,
    has_database=True,
    uses_bus=True,
    settings_class="auth.settings:AuthSettings",
    start_order=30,
    stand_ins={"cardcheck_sim": 8011},
)
