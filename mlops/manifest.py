"""How the launcher finds mlops: see common.manifest."""

from common.manifest import ServiceManifest

MANIFEST = ServiceManifest(
    "mlops",
    port=8009,
    has_database=True,
    uses_bus=True,
    settings_class="mlops.settings:MlopsSettings",
    # Consumes branch_owner's TaskConfirmed and the instances' swap reports: starts before them.
    start_order=35,
    commands="mlops.cli:mlops",
    # The training worker: a process of its own (`smartgym serve mlops-worker`), CPU-bound.
    processes={"worker": "mlops.worker:main"},
)
