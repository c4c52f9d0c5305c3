"""How the launcher finds branch_owner: see common.manifest."""

from common.manifest import ServiceManifest

MANIFEST = ServiceManifest(
    "branch_owner",
    port=8005,
    has_database=True,
    uses_bus=True,
    settings_class="branch_owner.settings:BranchOwnerSettings",
    # Consumes helper's TaskJudged and access's AccessGranted: starts before both's producers
    # that come after it (access); helper starts just before, as it consumes TaskConfirmed.
    start_order=44,
)
