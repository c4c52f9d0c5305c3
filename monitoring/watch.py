"""The live watch over every registered device: observations in, announced changes out.

Pings and heartbeats arrive by the thousand per second and are judged in memory (one
:class:`DeviceHealth` per device). Only a change of health touches the database: a single
writer task commits each batch of changes — the audit rows, the fault rows and their
events — in one unit of work, in the order they happened, so a burst (a branch's
network going down takes hundreds of devices with it) is a few transactions, not a storm.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from prometheus_client import Counter, Gauge, Histogram

from common.events.envelope import utc_now
from common.observability import Metrics
from common.security import secret_digest
from monitoring.detector import DeviceHealth, Health, Rules, Transition
from monitoring.settings import MonitoringSettings

log = logging.getLogger(__name__)

MAX_BATCH = 200


@dataclass(frozen=True)
class DeviceSpec:
    """What the watch needs to know about a registered device."""

    device_id: str
    branch_id: str
    kind: str
    name: str
    criticality: str
    ping_url: str | None
    heartbeat_period_s: int | None
    token_hash: str
    # Tells this registration from a later one under the same id: a change observed before
    # the device was retired must not land on the row registered after.
    registered_at: datetime


@dataclass(frozen=True)
class Change:
    """One health change to record; ``opens``/``closes`` name the fault it starts or ends."""

    spec: DeviceSpec
    previous: Health
    health: Health
    reason: str
    at: datetime
    opens: uuid.UUID | None = None
    closes: uuid.UUID | None = None
    fault_opened_at: datetime | None = None
    # For a fault: the device's last sign of life before it (None if it never had one).
    silent_since: datetime | None = None

    @property
    def announced(self) -> bool:
        return self.opens is not None or self.closes is not None

    def public(self) -> dict[str, Any]:
        return {
            "device_id": self.spec.device_id,
            "branch_id": self.spec.branch_id,
            "kind": self.spec.kind,
            "name": self.spec.name,
            "health": self.health.value,
            "previous": self.previous.value,
            "reason": self.reason,
            "at": self.at.isoformat(),
            "fault_id": str(self.opens or self.closes) if self.announced else None,
        }


class ChangeStore(Protocol):
    async def record(self, changes: list[Change]) -> None: ...


class PingTargets(Protocol):
    def set_target(self, device_id: str, url: str, branch_id: str) -> None: ...
    def remove_target(self, device_id: str) -> None: ...
    def recheck(self, device_id: str, after_s: float) -> None: ...


@dataclass
class Watched:
    spec: DeviceSpec
    health: DeviceHealth
    open_fault: uuid.UUID | None = None
    fault_opened_at: datetime | None = None
    windows: list[tuple[datetime, datetime]] = field(default_factory=list)
    readings: dict[str, float] = field(default_factory=dict)
    # Set when the device hung up its heartbeat connection: until then (monotonic clock)
    # a reconnect clears the suspicion and the pings that failed meanwhile.
    suspect_until: float | None = None


class WatchMetrics:
    def __init__(self, metrics: Metrics) -> None:
        self.devices = Gauge("monitoring_devices", "Devices watched, by health.", ["health"], registry=metrics.registry)
        self.observations = Counter(
            "monitoring_observations", "Pings and heartbeats judged.", ["source", "ok"], registry=metrics.registry
        )
        self.changes = Counter(
            "monitoring_health_changes", "Health changes, by new health.", ["health"], registry=metrics.registry
        )
        self.write_seconds = Histogram(
            "monitoring_change_write_seconds", "Time to commit a batch of changes.", registry=metrics.registry
        )
        # QAS-01 (alerted within 15 s, P95): from the last sign of life to the committed
        # EquipmentFault. An upper bound of the true latency: the device went silent
        # somewhere after its last contact.
        self.fault_alert_seconds = Histogram(
            "monitoring_fault_alert_seconds",
            "Device's last contact to its fault event committed, seconds.",
            buckets=(1.0, 2.5, 5.0, 7.5, 10.0, 12.5, 15.0, 20.0, 30.0, 60.0, 120.0, 300.0),
            registry=metrics.registry,
        )
        self.suspicions = Counter(
            "monitoring_suspicions",
            "Heartbeat connections a device dropped, by how the suspicion ended.",
            ["outcome"],
            registry=metrics.registry,
        )


class EquipmentWatch:
    def __init__(
        self,
        *,
        settings: MonitoringSettings,
        store: ChangeStore,
        pinger: PingTargets,
        metrics: WatchMetrics,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._settings = settings
        self._store = store
        self._pinger = pinger
        self._metrics = metrics
        self._clock = clock
        self._devices: dict[str, Watched] = {}
        # Every registered device, watched here or not: a heartbeat connection may land on
        # any replica, which must authenticate it and relay what it says to the holder.
        self._known: dict[str, DeviceSpec] = {}
        # With sharding: is this branch watched here? And where observations of devices
        # watched elsewhere go (see monitoring.shards). None: one process watches all.
        self.scope: Callable[[str], bool] | None = None
        self.relay: Callable[[dict[str, Any]], None] | None = None
        self._queue: asyncio.Queue[Change] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self._listeners: set[Callable[[list[Change]], None]] = set()
        self._pings_ok = metrics.observations.labels("ping", "yes")
        self._pings_failed = metrics.observations.labels("ping", "no")
        self.loaded = False  # set once the registry has told the watch every device

    # -- the registry tells the watch what to watch -------------------------------------

    def watch(self, spec: DeviceSpec, *, faulty_since: tuple[uuid.UUID, datetime] | None = None) -> None:
        """Start (or keep) watching ``spec``; ``faulty_since`` restores an open fault after a restart.

        A device of a branch another replica holds is only remembered (to authenticate its
        heartbeats), not watched."""
        self._known[spec.device_id] = spec
        if self.scope is not None and not self.scope(spec.branch_id):
            self._unwatch(spec.device_id)
            return
        kind_rules = self._settings.rules_for(spec.kind)
        rules = Rules(
            fail_after=kind_rules.fail_after,
            recover_after=kind_rules.recover_after,
            heartbeat_period=timedelta(seconds=spec.heartbeat_period_s) if spec.heartbeat_period_s else None,
            heartbeat_grace=kind_rules.heartbeat_grace,
        )
        current = self._devices.get(spec.device_id)
        if current is not None and current.spec.registered_at != spec.registered_at:
            # Retired and registered again under its id (a replica that holds the branch
            # may hear of both at once): the old registration's health and open fault,
            # withdrawn with it, are not the new device's.
            self._unwatch(spec.device_id)
            current = None
        if current is None:
            current = Watched(spec, DeviceHealth(rules))
            # A device that heartbeats gets one period's grace to (re)connect after we start.
            current.health.last_heartbeat = self._clock() if rules.heartbeat_period else None
            self._devices[spec.device_id] = current
        else:
            current.spec, current.health.rules = spec, rules
        if faulty_since is not None:
            current.health.health = Health.FAULTY
            current.open_fault, current.fault_opened_at = faulty_since
        if spec.ping_url:
            self._pinger.set_target(spec.device_id, spec.ping_url, spec.branch_id)
        else:
            self._pinger.remove_target(spec.device_id)

    def forget(self, device_id: str, *, registered_at: datetime | None = None) -> None:
        """Stop watching the device; with ``registered_at``, only that registration of it (a
        registration under the same id that came in meanwhile stays)."""
        known = self._known.get(device_id)
        if registered_at is not None and known is not None and known.registered_at != registered_at:
            return
        self._known.pop(device_id, None)
        self._unwatch(device_id)

    def _unwatch(self, device_id: str) -> None:
        if self._devices.pop(device_id, None) is not None:
            self._pinger.remove_target(device_id)

    def release(self) -> int:
        """Stop watching every device whose branch is no longer in scope (its shard went
        to another replica, or our lease ran out); returns how many."""
        if self.scope is None:
            return 0
        gone = [device_id for device_id, watched in self._devices.items() if not self.scope(watched.spec.branch_id)]
        for device_id in gone:
            self._unwatch(device_id)
        return len(gone)

    def known_branches(self) -> set[str]:
        return {spec.branch_id for spec in self._known.values()}

    def is_watched(self, device_id: str, *, registered_at: datetime | None = None) -> bool:
        """Whether the device is watched here; with ``registered_at``, as that registration."""
        watched = self._devices.get(device_id)
        return watched is not None and registered_at in (None, watched.spec.registered_at)

    def watched_in(self, branch_ids: Iterable[str]) -> list[str]:
        branches = set(branch_ids)
        return [device_id for device_id, watched in self._devices.items() if watched.spec.branch_id in branches]

    def watched_ids(self) -> list[str]:
        return list(self._devices)

    def _relay(self, device_id: str, message: dict[str, Any]) -> None:
        if self.relay is not None and device_id in self._known:
            self.relay({"device_id": device_id, **message})

    async def apply_relayed(self, message: dict[str, Any]) -> None:
        """An observation another replica made of a device it does not watch."""
        device_id = str(message.get("device_id", ""))
        if device_id not in self._devices:
            return
        kind = message.get("kind")
        if kind == "beat":
            readings = {str(key): float(value) for key, value in dict(message.get("readings") or {}).items()}
            await self.on_heartbeat(device_id, str(message.get("status", "")), readings)
        elif kind == "presence":
            self.on_presence(device_id, bool(message.get("connected")))
        elif kind == "report":
            branch_id = str(message.get("branch_id", ""))
            self.on_report(device_id, bool(message.get("ok")), str(message.get("reason", "")), branch_id=branch_id)

    def set_maintenance(self, device_id: str, windows: Iterable[tuple[datetime, datetime]]) -> None:
        watched = self._devices.get(device_id)
        if watched is not None:
            watched.windows = sorted(windows)
            self._refresh_window(watched, self._clock())

    def authenticate(self, device_id: str, token: str) -> DeviceSpec | None:
        """The device's registration when ``token`` is its token, else None."""
        spec = self._known.get(device_id)
        # Compare against something even for unknown ids, so timing does not tell which exist.
        expected = spec.token_hash if spec else "0" * 64
        if hmac.compare_digest(secret_digest(token), expected) and spec is not None:
            return spec
        return None

    def snapshot(self, device_id: str) -> dict[str, Any] | None:
        watched = self._devices.get(device_id)
        if watched is None:
            return None
        health = watched.health
        return {
            "failures_in_a_row": health.failures_in_a_row,
            "last_heartbeat": health.last_heartbeat.isoformat() if health.last_heartbeat else None,
            "in_maintenance": health.in_maintenance(self._clock()),
            "readings": dict(watched.readings),
        }

    # -- observations -------------------------------------------------------------------

    async def on_ping(self, device_id: str, ok: bool, detail: str) -> None:
        self.ping_result(device_id, ok, detail)

    def ping_result(self, device_id: str, ok: bool, detail: str) -> None:
        """One ping's outcome. Synchronous: called by the pinger thousands of times a
        second, where a coroutine per ping would cost more than judging it."""
        watched = self._devices.get(device_id)
        if watched is None:
            return
        health = watched.health
        if ok:
            self._pings_ok.inc()
            if health.health is Health.OK and watched.suspect_until is None:
                # The common case, kept short: a healthy device answered.
                health.last_contact = self._clock()
                health.failures_in_a_row = 0
                health.successes_in_a_row += 1
                return
        else:
            self._pings_failed.inc()
        transition = health.ping(ok, self._clock(), detail)
        if ok and watched.suspect_until is not None:
            watched.suspect_until = None
            self._metrics.suspicions.labels("answered").inc()
        if not ok and health.health is not Health.FAULTY:
            # Confirm quickly: a whole period between the first and the second failure
            # would double the detection time. A ping that timed out already gave the
            # device its whole timeout: the next goes at once (a slow one was usually
            # confirmed while it ran: the pinger then skips this recheck). A device that
            # hung up is confirmed at the end of its reconnect window, so a quick reboot is
            # not announced.
            delay = 0.0 if detail == "timeout" else self._settings.monitoring_confirm_after_s
            if watched.suspect_until is not None:
                delay = max(delay, watched.suspect_until - time.monotonic())
            self._pinger.recheck(device_id, delay)
        if transition is not None:
            if transition.health is Health.FAULTY and watched.suspect_until is not None:
                watched.suspect_until = None
                self._metrics.suspicions.labels("confirmed").inc()
            self._apply(watched, transition)

    def on_presence(self, device_id: str, connected: bool) -> None:
        """The heartbeat server saw ``device_id`` connect, or hang up.

        A crash or a reboot closes the device's socket at once, long before the next ping
        is due: a hang-up is a suspicion that triggers an immediate ping, and its
        confirmation at the end of the reconnect window. A device that reconnects within
        the window is not announced (reconnect churn is not a fault)."""
        watched = self._devices.get(device_id)
        if watched is None:
            self._relay(device_id, {"kind": "presence", "connected": connected})
            return
        if connected:
            if watched.suspect_until is not None:
                watched.suspect_until = None
                self._metrics.suspicions.labels("reconnected").inc()
                if watched.health.health is not Health.FAULTY:
                    watched.health.failures_in_a_row = 0
            return
        if watched.spec.ping_url is None or watched.health.health is Health.FAULTY:
            # Nothing to ping (the overdue heartbeat rule decides), or already announced.
            return
        watched.suspect_until = time.monotonic() + self._settings.monitoring_reconnect_window_s
        self._pinger.recheck(device_id, 0.0)

    async def on_heartbeat(self, device_id: str, status: str, readings: dict[str, float]) -> None:
        watched = self._devices.get(device_id)
        if watched is None:
            self._relay(device_id, {"kind": "beat", "status": status, "readings": readings})
            return
        self._metrics.observations.labels("heartbeat", "yes" if status == "ok" else "no").inc()
        watched.readings = readings
        transition = watched.health.heartbeat(status, self._clock())
        if transition is not None:
            self._apply(watched, transition)

    def on_report(self, device_id: str, ok: bool, reason: str, *, branch_id: str) -> None:
        watched = self._devices.get(device_id)
        if watched is None:
            spec = self._known.get(device_id)
            if spec is not None and spec.branch_id == branch_id:
                self._relay(device_id, {"kind": "report", "ok": ok, "reason": reason, "branch_id": branch_id})
            return
        if watched.spec.branch_id != branch_id:
            return
        transition = watched.health.report(ok, self._clock(), reason)
        if transition is not None:
            self._apply(watched, transition)

    def sweep(self) -> None:
        """Overdue heartbeats, maintenance windows that opened or closed, and the device
        counts by health (counted here, once a second, not on every change: a burst of
        changes must not cost a pass over every device each)."""
        now = self._clock()
        counts = dict.fromkeys(Health, 0)
        for watched in self._devices.values():
            counts[watched.health.health] += 1
            self._refresh_window(watched, now)
            transition = watched.health.check_overdue(now)
            if transition is not None:
                self._apply(watched, transition)
            elif (
                watched.health.health is Health.FAULTY
                and watched.open_fault is None
                and not watched.health.in_maintenance(now)
            ):
                # Went faulty during maintenance and is still down after it: announce now.
                reason = f"still down after maintenance: {watched.health.last_reason}"
                self._open_fault(watched, Health.FAULTY, reason, now)
        for health, count in counts.items():
            self._metrics.devices.labels(health.value).set(count)

    # -- turning transitions into recorded changes --------------------------------------

    def _apply(self, watched: Watched, transition: Transition) -> None:
        self._metrics.changes.labels(transition.health.value).inc()
        if transition.health is Health.FAULTY and transition.announce:
            self._open_fault(watched, transition.previous, transition.reason, transition.at)
        elif transition.health is Health.OK and watched.open_fault is not None:
            # Good news closes an announced fault even inside a maintenance window.
            change = Change(
                watched.spec,
                transition.previous,
                Health.OK,
                transition.reason,
                transition.at,
                closes=watched.open_fault,
                fault_opened_at=watched.fault_opened_at,
            )
            watched.open_fault = watched.fault_opened_at = None
            self._queue.put_nowait(change)
        else:
            self._queue.put_nowait(
                Change(watched.spec, transition.previous, transition.health, transition.reason, transition.at)
            )

    def _open_fault(self, watched: Watched, previous: Health, reason: str, at: datetime) -> None:
        fault_id = uuid.uuid4()
        watched.open_fault, watched.fault_opened_at = fault_id, at
        self._queue.put_nowait(
            Change(
                watched.spec,
                previous,
                Health.FAULTY,
                reason,
                at,
                opens=fault_id,
                silent_since=watched.health.last_contact,
            )
        )

    @staticmethod
    def _refresh_window(watched: Watched, now: datetime) -> None:
        watched.windows = [window for window in watched.windows if window[1] > now]
        current = [end for start, end in watched.windows if start <= now]
        watched.health.maintenance_until = max(current) if current else None

    # -- the writer ---------------------------------------------------------------------

    def add_listener(self, listener: Callable[[list[Change]], None]) -> None:
        self._listeners.add(listener)

    def remove_listener(self, listener: Callable[[list[Change]], None]) -> None:
        self._listeners.discard(listener)

    async def start(self) -> None:
        self._writer = asyncio.create_task(self._write_changes(), name="monitoring-writer")

    async def stop(self) -> None:
        # Record what was already decided before going away.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), 5.0)
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer

    async def _write_changes(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while not self._queue.empty() and len(batch) < MAX_BATCH:
                batch.append(self._queue.get_nowait())
            try:
                await self._commit(batch)
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _commit(self, batch: list[Change]) -> None:
        delay = 0.2
        while True:
            try:
                with self._metrics.write_seconds.time():
                    await self._store.record(batch)
                break
            except Exception:
                # The database is away: keep the changes (in order) and try again.
                log.warning("could not record %d health changes; retrying", len(batch), exc_info=True)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        committed = self._clock()
        for change in batch:
            if change.opens is not None and change.silent_since is not None:
                self._metrics.fault_alert_seconds.observe(max(0.0, (committed - change.silent_since).total_seconds()))
        for listener in list(self._listeners):
            listener(batch)
