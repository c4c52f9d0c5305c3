"""How the launcher finds facemodel: see common.manifest."""

from common.manifest import ServiceManifest

MANIFEST = ServiceManifest(
    "facemodel",
    port=8003,
    has_database=False,
    uses_bus=True,
    settings_class="facemodel.settings:FacemodelSettings",
    start_order=40,
)
