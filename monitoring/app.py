"""monitoring's app factory: the registry API, the fault log, the heartbeat server, the pinger
and the watch."""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from fastapi import FastAPI
from prometheus_client import Gauge
from sqlalchemy.ext.asyncio import create_async_engine

from common.api import create_service_app
from common.events.bus import EventBus
from common.events.parking import parking_lot_of
from common.kernel import ServiceKernel, build_kernel
from common.manifest import installed_manifests
from common.observability import Metrics
from common.periodic import Jobs, LoopLag, Periodic
from common.security import JwksCache
from common.settings import PlatformSettings
from contracts import CATALOG
from monitoring.api import router
from monitoring.bus_api import BusOperations
from monitoring.bus_api import router as bus_router
from monitoring.events import subscriptions
from monitoring.faults import FaultLog
from monitoring.heartbeat import Admission, Beat, HeartbeatServer, Limits
from monitoring.models import Base
from monitoring.pinger import Pinger
from monitoring.registry import EquipmentRegistry
from monitoring.settings import MonitoringSettings
from monitoring.shards import Relay, ShardLeases, shard_of
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
    replica_id = config.monitoring_replica_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    fault_log = FaultLog(kernel)
    pinger, watch = _pinger_and_watch(config, kernel, replica_id, fault_log)
    kernel.subscriptions = subscriptions(watch)
    registry = EquipmentRegistry(kernel, watch, egress=config.egress())
    heartbeats = _heartbeat_server(config, kernel, watch)
    lag = _loop_lag(kernel)
    jobs = _background_jobs(config, watch, fault_log)
    leases: ShardLeases | None = None
    relay: Relay | None = None
    if config.monitoring_shards:
        leases, relay = _sharding(config, kernel, replica_id, pinger=pinger, watch=watch, registry=registry)

    async def start_watching() -> None:
        lag.start()
        await watch.start()
        devices = await registry.load()
        await pinger.start()
        port = await heartbeats.start(config.monitoring_heartbeat_host, config.monitoring_heartbeat_port)
        app.state.heartbeat_port = port
        if relay is not None and leases is not None:
            await relay.start()
            await leases.start()
        await jobs.start()
        log.info("knows %d devices, watches %d; heartbeats on port %d", devices, len(watch.watched_ids()), port)

    async def stop_watching() -> None:
        if leases is not None and relay is not None:
            await leases.stop()
            await relay.stop()
            await leases.engine.dispose()
        await jobs.stop()
        await heartbeats.stop()
        await pinger.stop()
        await watch.stop()
        await lag.stop()

    app = create_service_app(
        kernel,
        title="SmartGym monitoring",
        routers=[router, bus_router],
        on_start=[start_watching],
        on_stop=[stop_watching],
    )
    app.state.registry = registry
    app.state.faults = fault_log
    app.state.watch = watch
    app.state.settings = config
    app.state.bus_operations = _bus_operations(config, kernel)
    app.state.leases = leases
    return app


def _pinger_and_watch(
    config: MonitoringSettings, kernel: ServiceKernel, replica_id: str, fault_log: FaultLog
) -> tuple[Pinger, EquipmentWatch]:
    """The pinger and the watch, each needing the other: the watch tells the pinger which
    devices to ping and when to check again, the pinger tells the watch what it found."""

    def ping_result(device_id: str, ok: bool, detail: str) -> None:
        watch.ping_result(device_id, ok, detail)

    keepalive = _keepalive_budget(config)
    pinger = Pinger(
        interval_s=config.monitoring_ping_interval_s,
        timeout_s=config.monitoring_ping_timeout_s,
        concurrency=config.monitoring_ping_concurrency,
        on_result=ping_result,
        egress=config.egress(),
        confirm_after_s=config.monitoring_confirm_after_s,
        keepalive_max=keepalive,
        # Names the replica to the device: which one pings it shows in its logs.
        agent=f"smartgym-monitoring/{replica_id}",
    )
    watch = EquipmentWatch(settings=config, store=fault_log, pinger=pinger, metrics=WatchMetrics(kernel.metrics))
    return pinger, watch


def _heartbeat_server(config: MonitoringSettings, kernel: ServiceKernel, watch: EquipmentWatch) -> HeartbeatServer:
    async def authenticate(device_id: str, token: str) -> Admission | None:
        spec = watch.authenticate(device_id, token)
        return None if spec is None else Admission(heartbeat_period_s=spec.heartbeat_period_s)

    async def beat(device_id: str, message: Beat) -> None:
        await watch.on_heartbeat(device_id, message.status, message.readings)

    return HeartbeatServer(
        authenticate=authenticate,
        on_beat=beat,
        limits=Limits(max_connections=config.monitoring_max_connections),
        metrics=kernel.metrics,
        on_presence=watch.on_presence,
    )


def _loop_lag(kernel: ServiceKernel) -> LoopLag:
    # A late loop sends pings late and renews leases late: say so, with how late, so a
    # false alarm or a lost lease can be matched to the moment the process was starved.
    lateness = Gauge(
        "monitoring_loop_lateness_worst_seconds",
        "Worst lateness of the event loop since start, seconds.",
        registry=kernel.metrics.registry,
    )

    def late(seconds: float) -> None:
        lateness.set(lag.worst)
        log.warning("event loop ran %.2f s late", seconds)

    lag = LoopLag(every_s=0.1, threshold_s=0.5, on_late=late)
    return lag


def _background_jobs(config: MonitoringSettings, watch: EquipmentWatch, fault_log: FaultLog) -> Jobs:
    """The sweep for devices gone silent and the escalation of faults nobody acknowledged."""

    async def sweep() -> None:
        watch.sweep()

    async def escalate() -> None:
        escalated = await fault_log.escalate_overdue(timedelta(seconds=config.monitoring_escalate_after_s))
        if escalated:
            log.warning("escalated %d unacknowledged critical faults", escalated)

    return Jobs(
        Periodic("monitoring-sweep", config.monitoring_sweep_interval_s, sweep),
        Periodic("monitoring-escalation", ESCALATION_CHECK_S, escalate),
    )


def _sharding(
    config: MonitoringSettings,
    kernel: ServiceKernel,
    replica_id: str,
    *,
    pinger: Pinger,
    watch: EquipmentWatch,
    registry: EquipmentRegistry,
) -> tuple[ShardLeases, Relay]:
    """With several replicas: the leases that say which branches this one watches, and
    the relay that passes observations on to the replica watching the device."""
    if kernel.db.is_sqlite:
        raise ValueError("sharding monitoring over replicas needs PostgreSQL (leases and NOTIFY)")
    gained, lost = _shard_changes(config, pinger=pinger, watch=watch, registry=registry)
    leases = _shard_leases(config, kernel, replica_id, on_gain=gained, on_lose=lost)
    relay = _relay(kernel, replica_id, watch=watch, registry=registry)

    def devices_changed(device_ids: list[str]) -> None:
        for start in range(0, len(device_ids), 80):
            relay.send({"kind": "devices", "ids": device_ids[start : start + 80]})

    watch.scope = leases.holds
    watch.relay = relay.send
    registry.changed = devices_changed
    return leases, relay


def _shard_changes(
    config: MonitoringSettings, *, pinger: Pinger, watch: EquipmentWatch, registry: EquipmentRegistry
) -> tuple[Callable[[frozenset[int], frozenset[int]], Awaitable[None]], Callable[[frozenset[int]], None]]:
    """What this replica does when it gains shards (loads their devices) and loses them."""
    shards = config.monitoring_shards
    spread_s = min(config.monitoring_takeover_spread_s, config.monitoring_ping_interval_s / 2)

    async def gained(taken: frozenset[int], orphaned: frozenset[int]) -> None:
        branches = sorted(branch for branch in watch.known_branches() if shard_of(branch, shards) in taken)
        await registry.load_branches(branches)
        hurried = 0
        if orphaned and spread_s > 0:
            # Their holder died: unpinged since before its lease ran out, they are
            # pinged now (spread over spread_s), not at their phase up to a period on.
            stranded = [branch for branch in branches if shard_of(branch, shards) in orphaned]
            hurried = pinger.hurry(watch.watched_in(stranded), within_s=spread_s)
        log.info(
            "watching shards %s (now %d devices; %d taken from an expired holder pinged within %.1f s)",
            sorted(taken),
            len(watch.watched_ids()),
            hurried,
            spread_s,
        )

    def lost(_shards: frozenset[int]) -> None:
        released = watch.release()
        log.info("let go of shards %s (%d devices)", sorted(_shards), released)

    return gained, lost


def _shard_leases(
    config: MonitoringSettings,
    kernel: ServiceKernel,
    replica_id: str,
    *,
    on_gain: Callable[[frozenset[int], frozenset[int]], Awaitable[None]],
    on_lose: Callable[[frozenset[int]], None],
) -> ShardLeases:
    # Renewed ten times a period and valid for 0.7 of one: a dead replica's shards are
    # free after 0.7 of a period and taken at the next renewal, within 0.8 of a period.
    # A renewal may then run up to ~0.48 of a period late (a loop busy with a takeover's
    # reconnections and loads on a starved CPU) before its holder stops watching: at a
    # quarter period and 0.6 a late renewal by 2.5 s lost every shard, and the reloads
    # that followed made the next one late too.
    interval = config.monitoring_ping_interval_s
    # The leases get connections of their own: a renewal queued behind the pool's
    # other users (a burst of health changes, a shard's devices loading) could let
    # every lease run out.
    # Autocommit and no pre-ping: a renewal is one or two round trips (see ShardLeases._renew);
    # a connection found dead fails that renewal, and the pool replaces it for the next.
    lease_engine = create_async_engine(kernel.db.url, pool_size=1, max_overflow=1, isolation_level="AUTOCOMMIT")
    return ShardLeases(
        engine=lease_engine,
        replica_id=replica_id,
        shards=config.monitoring_shards,
        renew_s=interval / 10,
        ttl_s=interval * 0.7,
        on_gain=on_gain,
        on_lose=on_lose,
    )


def _relay(kernel: ServiceKernel, replica_id: str, *, watch: EquipmentWatch, registry: EquipmentRegistry) -> Relay:
    async def relayed(message: dict[str, Any]) -> None:
        if message.get("kind") == "devices":
            await registry.reload([str(device_id) for device_id in message.get("ids", [])])
        else:
            await watch.apply_relayed(message)

    dsn = kernel.db.url.set(drivername="postgresql").render_as_string(hide_password=False)
    return Relay(dsn=dsn, replica_id=replica_id, on_message=relayed)


def _bus_operations(config: MonitoringSettings, kernel: ServiceKernel) -> BusOperations:
    """The parking lot's operations over the services whose queues the routes may touch."""
    configured = config.monitoring_bus_services or tuple(
        manifest.name for manifest in installed_manifests() if manifest.uses_bus
    )
    try:
        lot = parking_lot_of(kernel.bus, scan_limit=config.monitoring_bus_scan_limit) if kernel.bus else None
    except TypeError:
        lot = None  # a bus of a kind without a parking lot: the routes say so
    return BusOperations(
        lot,
        configured,
        explicit=bool(config.monitoring_bus_services),
        inbox_retention=timedelta(days=config.inbox_retention_days),
    )


def _keepalive_budget(config: MonitoringSettings) -> int:
    """Kept-open ping connections that fit beside the heartbeat connections in the
    process's open-file limit (a refused accept would look like a device fault)."""
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return config.monitoring_ping_keepalive_max
    room = max(0, soft - config.monitoring_max_connections - 1024)
    if room < config.monitoring_ping_keepalive_max:
        log.info(
            "keeping at most %d ping connections open (open-file limit %d, %d heartbeat connections)",
            room,
            soft,
            config.monitoring_max_connections,
        )
    return min(room, config.monitoring_ping_keepalive_max)
