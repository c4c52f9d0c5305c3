"""access's app factory: gates, face cache, entry passes and their background jobs."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from fastapi import FastAPI
from prometheus_client import Gauge

from access.api import router
from access.events import AccessEvents
from access.face_engine import FaceEngine
from access.face_metrics import CacheMetrics
from access.face_store import FACE_SEALING_PURPOSE
from access.facemodel_client import UnixSocketFacemodel
from access.faces import FaceCache
from access.gates import Gate, SerialLine, build_gates
from access.models import Base
from access.passes import EntryPassChecker
from access.service import AccessService
from access.settings import AccessSettings
from access.site import SiteAdditions
from common.api import create_service_app
from common.breaker import breaker_for
from common.crypto import VectorSealer
from common.events.bus import EventBus
from common.events.envelope import utc_now
from common.kernel import ServiceKernel, build_kernel, remote_jwks
from common.observability import Metrics
from common.periodic import Jobs, Periodic
from common.security import JwksCache
from common.settings import PlatformSettings
from contracts import CATALOG, FACE_TRANSIT_PURPOSE, GateStatusChanged

SERVICE = "access"
GALLERY_CHECK_INTERVAL_S = 5.0
# How soon a gate added with `smartgym admin add-gate` opens.
SITE_FILE_CHECK_INTERVAL_S = 1.0

log = logging.getLogger(__name__)


def create_app(
    settings: PlatformSettings,
    *,
    bus: EventBus | None = None,
    metrics: Metrics | None = None,
    keys: JwksCache | None = None,
    facemodel: FaceEngine | None = None,
) -> FastAPI:
    access_settings = AccessSettings.of(settings)
    # The gate must keep working while auth is away, even across a restart: remember the
    # public keys. And it stays ready without the broker: the outbox keeps its events.
    keys = keys or remote_jwks(access_settings, remember_in=access_settings.data_dir / "access-jwks.json")
    kernel = build_kernel(
        SERVICE,
        access_settings,
        metadata=Base.metadata,
        catalog=CATALOG,
        bus=bus,
        metrics=metrics,
        keys=keys,
        ready_without_bus=True,
    )
    stop_hooks: list[Callable[[], Awaitable[None]]] = []
    if facemodel is None:
        client = UnixSocketFacemodel(
            access_settings.access_facemodel_socket,
            breaker=breaker_for("facemodel", access_settings, kernel.metrics),
            timeout_s=access_settings.access_facemodel_timeout_s,
        )
        stop_hooks.append(client.aclose)
        facemodel = client
    sealer = VectorSealer(access_settings.sealing_keys(), purpose=FACE_SEALING_PURPOSE)
    faces = _face_cache(access_settings, kernel, facemodel, sealer)
    events = AccessEvents(
        faces=faces,
        sealer=sealer,
        transit=VectorSealer(access_settings.sealing_keys(), purpose=FACE_TRANSIT_PURPOSE),
        half_life_days=access_settings.access_visit_half_life_days,
    )
    kernel.subscriptions = events.subscriptions(access_settings.access_site)
    gates, lines = build_gates(
        access_settings.access_gates,
        reconnect_interval_s=access_settings.access_serial_reconnect_s,
        line_timeout_ms=access_settings.access_line_timeout_ms,
        line_retries=access_settings.access_line_retries,
    )
    watch_lines = _report_line_changes(kernel, gates, lines)
    service = AccessService(
        kernel=kernel,
        settings=access_settings,
        gates=gates,
        faces=faces,
        passes=EntryPassChecker(keys, access_settings),
    )
    jobs, stop_peers = _background_jobs(access_settings, service, faces, gates, lines, watch_lines)

    async def start_gates_and_faces() -> None:
        for line in lines:
            await line.start()
        try:
            await faces.load_all()
        except Exception:
            # facemodel may still be starting beside us; the keeper loads it shortly.
            log.warning("face galleries not loaded at start-up; retrying in the background", exc_info=True)
        await jobs.start()

    async def stop_gates() -> None:
        await service.stop()
        await jobs.stop()
        await faces.close()
        for gate in gates.values():
            await gate.driver.close()
        for line in lines:
            await line.stop()
        for stop_peer in stop_peers:
            stop_peer()

    app = create_service_app(
        kernel,
        title="SmartGym access",
        routers=[router],
        on_start=[start_gates_and_faces],
        on_stop=[*stop_hooks, stop_gates],
    )
    app.state.access = service
    app.state.settings = access_settings
    return app


def _face_cache(
    settings: AccessSettings, kernel: ServiceKernel, facemodel: FaceEngine, sealer: VectorSealer
) -> FaceCache:
    return FaceCache(
        database=kernel.db,
        engine=facemodel,
        sealer=sealer,
        branches=settings.served_branches,
        prefetch=settings.access_prefetch_members,
        near_miss_margin=settings.access_near_miss_margin,
        metrics=CacheMetrics(kernel.metrics),
        chain_gallery=settings.access_chain_gallery,
    )


def _background_jobs(
    settings: AccessSettings,
    service: AccessService,
    faces: FaceCache,
    gates: dict[str, Gate],
    lines: list[SerialLine],
    watch_lines: Callable[[list[SerialLine]], None],
) -> tuple[Jobs, list[Callable[[], None]]]:
    """The face cache's keepers, the used-pass sweep and, with a site file, what opens
    gates added while access runs; with what stops the latter."""
    periodic = [
        Periodic("access-gallery-keeper", GALLERY_CHECK_INTERVAL_S, faces.ensure_loaded),
        Periodic("access-prefetch", settings.access_prefetch_refresh_s, faces.refresh_prefetch),
        Periodic("access-face-reconciler", settings.access_face_reconcile_s, faces.reconcile),
        Periodic("access-used-passes", 3600.0, service.forget_used_passes),
    ]
    stop_peers: list[Callable[[], None]] = []
    if settings.access_site_file is not None:
        additions = SiteAdditions(settings=settings, gates=gates, lines=lines, faces=faces, watch_lines=watch_lines)
        periodic.append(Periodic("access-site-file", SITE_FILE_CHECK_INTERVAL_S, additions.apply))
        stop_peers.append(additions.stop)
    return Jobs(*periodic), stop_peers


def _report_line_changes(
    kernel: ServiceKernel, gates: dict[str, Gate], lines: list[SerialLine]
) -> Callable[[list[SerialLine]], None]:
    """Serial health as a metric, and as an event for monitoring and the branch owner.
    Returns what watches lines opened later the same way."""
    line_up = Gauge(
        "access_gate_line_up", "1 while the gate's serial line is open.", ["gate"], registry=kernel.metrics.registry
    )
    for gate in gates.values():
        line_up.labels(gate.config.gate_id).set(1 if gate.line_up else 0)

    async def changed(line: SerialLine, up: bool, detail: str) -> None:
        async with kernel.unit_of_work() as uow:
            for gate in gates.values():
                if gate.driver.line is line:
                    line_up.labels(gate.config.gate_id).set(1 if up else 0)
                    uow.emit(
                        GateStatusChanged(
                            branch_id=gate.config.branch_id,
                            gate_id=gate.config.gate_id,
                            line="up" if up else "down",
                            detail=detail[:200],
                            changed_at=utc_now(),
                        )
                    )

    def watch(added: list[SerialLine]) -> None:
        for line in added:
            line.add_listener(changed)
            for gate in gates.values():
                if gate.driver.line is line:
                    line_up.labels(gate.config.gate_id).set(1 if gate.line_up else 0)

    watch(lines)
    return watch
