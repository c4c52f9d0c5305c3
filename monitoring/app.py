"""monitoring's app factory: the registry API, the heartbeat server, the pinger and the watch."""

from __future__ import annotations

import logging
from datetime import timedelta

from fastapi import FastAPI

from common.api import create_service_app
from common.events.bus import EventBus
from common.events.parking import parking_lot_of
from common.kernel import build_kernel
from common.manifest import installed_manifests
from common.observability import Metrics
from common.periodic import Jobs, Periodic
from common.security import JwksCache
from common.settings import PlatformSettings
from contracts import CATALOG
from monitoring.api import router
from monitoring.bus_api import BusOperations
from monitoring.bus_api import router as bus_router
from monitoring.events import subscriptions
from monitoring.heartbeat import Beat, HeartbeatServer, Limits
from monitoring.models import Base
from monitoring.pinger import Pinger
from monitoring.registry import EquipmentRegistry, FaultRecorder
from monitoring.settings import MonitoringSettings
from monitoring.watch import EquipmentWatch, WatchMetrics

SERVICE = "monitoring"
ESCALATION_CHECK_S = 5.0

log = logging.getLogger(__name__)


def create_app(
    settings: PlatformSettings,
    *,
    bus: EventBus | None = None,
    metrics: Metrics | None = None,
    keys: JwksCache | None = None,
) -> FastAPI:
    config = MonitoringSettings.of(settings)
    kernel = build_kernel(SERVICE, config, metadata=Base.metadata, catalog=CATALOG, bus=bus, metrics=metrics, keys=keys)

    async def ping_result(device_id: str, ok: bool, detail: str) -> None:
        await watch.on_ping(device_id, ok, detail)

    pinger = Pinger(
        interval_s=config.monitoring_ping_interval_s,
        timeout_s=config.monitoring_ping_timeout_s,
        concurrency=config.monitoring_ping_concurrency,
        on_result=ping_result,
        egress=config.egress(),
    )
    watch = EquipmentWatch(
        settings=config, store=FaultRecorder(kernel), pinger=pinger, metrics=WatchMetrics(kernel.metrics)
    )
    kernel.subscriptions = subscriptions(watch)
    registry = EquipmentRegistry(kernel, watch, egress=config.egress())

    async def authenticate(device_id: str, token: str) -> bool:
        return watch.authenticate(device_id, token)

    async def beat(device_id: str, message: Beat) -> None:
        await watch.on_heartbeat(device_id, message.status, message.readings)

    heartbeats = HeartbeatServer(
        authenticate=authenticate,
        on_beat=beat,
        limits=Limits(max_connections=config.monitoring_max_connections),
        metrics=kernel.metrics,
        on_presence=watch.on_presence,
    )

    async def sweep() -> None:
        watch.sweep()

    async def escalate() -> None:
        escalated = await registry.escalate_overdue(timedelta(seconds=config.monitoring_escalate_after_s))
        if escalated:
            log.warning("escalated %d unacknowledged critical faults", escalated)

    jobs = Jobs(
        Periodic("monitoring-sweep", config.monitoring_sweep_interval_s, sweep),
        Periodic("monitoring-escalation", ESCALATION_CHECK_S, escalate),
    )

    async def start_watching() -> None:
        await watch.start()
        devices = await registry.load()
        await pinger.start()
        port = await heartbeats.start(config.monitoring_heartbeat_host, config.monitoring_heartbeat_port)
        app.state.heartbeat_port = port
        await jobs.start()
        log.info("watching %d devices; heartbeats on port %d", devices, port)

    async def stop_watching() -> None:
        await jobs.stop()
        await heartbeats.stop()
        await pinger.stop()
        await watch.stop()

    app = create_service_app(
        kernel,
        title="SmartGym monitoring",
        routers=[router, bus_router],
        on_start=[start_watching],
        on_stop=[stop_watching],
    )
    app.state.registry = registry
    app.state.watch = watch
    app.state.settings = config
    configured = config.monitoring_bus_services or tuple(
        manifest.name for manifest in installed_manifests() if manifest.uses_bus
    )
    try:
        lot = parking_lot_of(kernel.bus, scan_limit=config.monitoring_bus_scan_limit) if kernel.bus else None
    except TypeError:
        lot = None  # a bus of a kind without a parking lot: the routes say so
    app.state.bus_operations = BusOperations(lot, configured, explicit=bool(config.monitoring_bus_services))
    return app
