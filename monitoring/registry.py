"""The equipment registry: devices, their tokens, maintenance windows and health history.

Registration hands out a device token once (only its hash is stored) and tells the live
watch; the watch's changes are stored by the fault log (monitoring.faults).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update

from common.events.envelope import utc_now
from common.kernel import ServiceKernel
from common.security import secret_digest
from contracts import EquipmentFaultWithdrawn
from monitoring.detector import Health
from monitoring.egress import EgressPolicy
from monitoring.errors import Conflict, NotFound
from monitoring.models import Equipment, Fault, MaintenanceWindow, StateChange
from monitoring.schemas import EquipmentIn, MaintenanceIn
from monitoring.watch import DeviceSpec, EquipmentWatch


@dataclass(frozen=True)
class Registered:
    equipment: Equipment
    token: str


def spec_of(row: Equipment) -> DeviceSpec:
    return DeviceSpec(
        device_id=row.device_id,
        branch_id=row.branch_id,
        kind=row.kind,
        name=row.name,
        criticality=row.criticality,
        ping_url=row.ping_url,
        heartbeat_period_s=row.heartbeat_period_s,
        token_hash=row.token_hash,
        registered_at=row.created_at,
    )


def new_token() -> str:
    return secrets.token_urlsafe(32)


class EquipmentRegistry:
    def __init__(self, kernel: ServiceKernel, watch: EquipmentWatch, *, egress: EgressPolicy) -> None:
        self._kernel = kernel
        self._watch = watch
        self._egress = egress
        # With sharding, every other replica is told a device changed (see monitoring.shards).
        self.changed: Callable[[list[str]], None] | None = None

    def _tell(self, *device_ids: str) -> None:
        if self.changed is not None:
            self.changed(list(device_ids))

    async def check_ping_urls(self, devices: Sequence[EquipmentIn]) -> None:
        """Refuse (EgressRefused) a ping URL monitoring may not call, before storing it;
        the pinger checks again on every ping, since names re-resolve."""
        for device in devices:
            if device.ping_url is not None:
                await self._egress.target(device.branch_id, str(device.ping_url))

    async def load(self, *, only: Callable[[str], bool] | None = None) -> int:
        """Tell the watch about every registered device, its open fault and its windows;
        with ``only``, open faults and windows are restored for those branches alone (the
        shards this replica just took), the rest are only remembered."""
        now = utc_now()
        async with self._kernel.db.sessions() as session:
            devices = (await session.scalars(select(Equipment))).all()
            still_open = await session.scalars(select(Fault).where(Fault.closed_at.is_(None)))
            open_faults = {fault.device_id: fault for fault in still_open}
            windows = (await session.scalars(select(MaintenanceWindow).where(MaintenanceWindow.ends_at > now))).all()
        chosen = {row.device_id for row in devices if only is None or only(row.branch_id)}
        for row in devices:
            if row.device_id not in chosen:
                self._watch.watch(spec_of(row))
                continue
            fault = open_faults.get(row.device_id)
            self._watch.watch(spec_of(row), faulty_since=(fault.fault_id, fault.opened_at) if fault else None)
        by_device: dict[str, list[tuple[datetime, datetime]]] = {}
        for window in windows:
            if window.device_id not in chosen:
                continue
            by_device.setdefault(window.device_id, []).append((window.starts_at, window.ends_at))
        for device_id, spans in by_device.items():
            self._watch.set_maintenance(device_id, spans)
        self._watch.loaded = True
        return len(devices)

    async def load_branches(self, branch_ids: Sequence[str]) -> int:
        """Watch the devices of these branches (shards just taken), with their open faults
        and maintenance windows as stored."""
        now = utc_now()
        loaded = 0
        for start in range(0, len(branch_ids), 500):
            chunk = list(branch_ids[start : start + 500])
            async with self._kernel.db.sessions() as session:
                rows = (await session.scalars(select(Equipment).where(Equipment.branch_id.in_(chunk)))).all()
                faults = {
                    fault.device_id: fault
                    for fault in await session.scalars(
                        select(Fault).where(Fault.branch_id.in_(chunk), Fault.closed_at.is_(None))
                    )
                }
                windows = (
                    await session.execute(
                        select(MaintenanceWindow.device_id, MaintenanceWindow.starts_at, MaintenanceWindow.ends_at)
                        .join(Equipment, Equipment.device_id == MaintenanceWindow.device_id)
                        .where(Equipment.branch_id.in_(chunk), MaintenanceWindow.ends_at > now)
                    )
                ).all()
            for row in rows:
                fault = faults.get(row.device_id)
                self._watch.watch(spec_of(row), faulty_since=(fault.fault_id, fault.opened_at) if fault else None)
            by_device: dict[str, list[tuple[datetime, datetime]]] = {}
            for device_id, starts_at, ends_at in windows:
                by_device.setdefault(device_id, []).append((starts_at, ends_at))
            for device_id, spans in by_device.items():
                self._watch.set_maintenance(device_id, spans)
            loaded += len(rows)
            await asyncio.sleep(0)  # let renewals and pings through between chunks
        return loaded

    async def reload(self, device_ids: Sequence[str]) -> None:
        """Another replica changed these devices: watch (or forget) them as stored now."""
        now = utc_now()
        async with self._kernel.db.sessions() as session:
            rows = {
                row.device_id: row
                for row in await session.scalars(select(Equipment).where(Equipment.device_id.in_(device_ids)))
            }
            faults = {
                fault.device_id: fault
                for fault in await session.scalars(
                    select(Fault).where(Fault.device_id.in_(device_ids), Fault.closed_at.is_(None))
                )
            }
            windows = (
                await session.scalars(
                    select(MaintenanceWindow).where(
                        MaintenanceWindow.device_id.in_(device_ids), MaintenanceWindow.ends_at > now
                    )
                )
            ).all()
        for device_id in device_ids:
            row = rows.get(device_id)
            if row is None:
                self._watch.forget(device_id)
                continue
            fault = faults.get(device_id)
            fresh = not self._watch.is_watched(device_id, registered_at=row.created_at)
            self._watch.watch(spec_of(row), faulty_since=(fault.fault_id, fault.opened_at) if fault and fresh else None)
            self._watch.set_maintenance(
                device_id, [(w.starts_at, w.ends_at) for w in windows if w.device_id == device_id]
            )

    async def register(self, device: EquipmentIn) -> Registered:
        await self.check_ping_urls([device])
        async with self._kernel.db.sessions() as session, session.begin():
            if await session.get(Equipment, device.device_id) is not None:
                raise Conflict(f"device {device.device_id} is already registered")
            token = new_token()
            row = _new_row(device, token)
            session.add(row)
        self._watch.watch(spec_of(row))
        self._tell(row.device_id)
        return Registered(row, token)

    async def register_many(self, devices: Sequence[EquipmentIn]) -> list[Registered]:
        """Register or re-register many devices at once; every one gets a fresh token.

        The caller was checked against the branches named in the body, so a device that
        already exists must belong to the branch its line names: otherwise an owner of one
        branch could rename another branch's device and take its heartbeat token. The
        refusal does not say which branch holds the id."""
        ids = [device.device_id for device in devices]
        if len(set(ids)) != len(ids):
            raise Conflict("a device id appears twice")
        await self.check_ping_urls(devices)
        registered: list[Registered] = []
        async with self._kernel.db.sessions() as session, session.begin():
            existing = {
                row.device_id: row
                for row in await session.scalars(select(Equipment).where(Equipment.device_id.in_(ids)))
            }
            for device in devices:
                token = new_token()
                row = existing.get(device.device_id)
                if row is None:
                    row = _new_row(device, token)
                    session.add(row)
                elif row.branch_id != device.branch_id:
                    raise Conflict(f"device id {device.device_id} is taken; choose another")
                else:
                    _update_row(row, device)
                    row.token_hash = secret_digest(token)
                registered.append(Registered(row, token))
        for item in registered:
            self._watch.watch(spec_of(item.equipment))
        self._tell(*(item.equipment.device_id for item in registered))
        return registered

    async def update(self, device: EquipmentIn) -> Equipment:
        await self.check_ping_urls([device])
        async with self._kernel.db.sessions() as session, session.begin():
            row = await session.get(Equipment, device.device_id)
            if row is None:
                raise NotFound(device.device_id)
            if row.branch_id != device.branch_id:
                raise Conflict("a device cannot move between branches; retire it and register it again")
            _update_row(row, device)
        self._watch.watch(spec_of(row))
        self._tell(row.device_id)
        return row

    async def rotate_token(self, device_id: str) -> Registered:
        async with self._kernel.db.sessions() as session, session.begin():
            row = await session.get(Equipment, device_id)
            if row is None:
                raise NotFound(device_id)
            token = new_token()
            row.token_hash, row.updated_at = secret_digest(token), utc_now()
        self._watch.watch(spec_of(row))
        self._tell(device_id)
        return Registered(row, token)

    async def retire(self, device_id: str) -> None:
        """The device is gone: its open fault is withdrawn (with an event, so whoever was
        told of the fault hears that it is over) and its history kept."""
        async with self._kernel.unit_of_work() as uow:
            session = uow.session
            # The device's row before its faults: the order FaultLog.record locks them in.
            row = await session.get(Equipment, device_id, with_for_update=True)
            if row is None:
                raise NotFound(device_id)
            now = utc_now()
            withdrawn = (
                await session.scalars(
                    update(Fault)
                    .where(Fault.device_id == device_id, Fault.closed_at.is_(None))
                    .values(closed_at=now)
                    .returning(Fault)
                )
            ).all()
            for fault in withdrawn:
                uow.emit(
                    EquipmentFaultWithdrawn(
                        fault_id=fault.fault_id,
                        device_id=device_id,
                        branch_id=fault.branch_id,
                        kind=row.kind,
                        name=row.name,
                        withdrawn_at=now,
                        escalated=fault.escalated_at is not None,
                    )
                )
            registered_at = row.created_at
            await session.delete(row)
        # This registration only: the id may be registered again once the retirement has
        # committed, before this line runs.
        self._watch.forget(device_id, registered_at=registered_at)
        self._tell(device_id)

    async def get(self, device_id: str) -> Equipment:
        async with self._kernel.db.sessions() as session:
            row = await session.get(Equipment, device_id)
        if row is None:
            raise NotFound(device_id)
        return row

    async def of_branch(self, branch_id: str) -> Sequence[Equipment]:
        async with self._kernel.db.sessions() as session:
            result = await session.scalars(
                select(Equipment).where(Equipment.branch_id == branch_id).order_by(Equipment.device_id)
            )
            return result.all()

    async def add_maintenance(self, device_id: str, window: MaintenanceIn, by: str) -> MaintenanceWindow:
        async with self._kernel.db.sessions() as session, session.begin():
            if await session.get(Equipment, device_id) is None:
                raise NotFound(device_id)
            row = MaintenanceWindow(
                device_id=device_id,
                starts_at=window.starts_at,
                ends_at=window.ends_at,
                reason=window.reason,
                created_by=by[:80],
            )
            session.add(row)
            await session.flush()
            windows = (
                await session.scalars(
                    select(MaintenanceWindow).where(
                        MaintenanceWindow.device_id == device_id, MaintenanceWindow.ends_at > utc_now()
                    )
                )
            ).all()
        self._watch.set_maintenance(device_id, [(w.starts_at, w.ends_at) for w in windows])
        self._tell(device_id)
        return row

    async def maintenance_of(self, device_id: str) -> Sequence[MaintenanceWindow]:
        async with self._kernel.db.sessions() as session:
            result = await session.scalars(
                select(MaintenanceWindow)
                .where(MaintenanceWindow.device_id == device_id)
                .order_by(MaintenanceWindow.starts_at.desc())
                .limit(100)
            )
            return result.all()

    async def history(self, device_id: str, limit: int) -> Sequence[StateChange]:
        async with self._kernel.db.sessions() as session:
            result = await session.scalars(
                select(StateChange)
                .where(StateChange.device_id == device_id)
                .order_by(StateChange.at.desc(), StateChange.id.desc())
                .limit(limit)
            )
            return result.all()


def _new_row(device: EquipmentIn, token: str) -> Equipment:
    now = utc_now()
    row = Equipment(
        device_id=device.device_id,
        branch_id=device.branch_id,
        token_hash=secret_digest(token),
        health=Health.UNKNOWN.value,
        health_reason="",
        health_since=None,
        created_at=now,
    )
    _update_row(row, device)
    return row


def _update_row(row: Equipment, device: EquipmentIn) -> None:
    row.kind = device.kind
    row.name = device.name
    row.address = device.address
    row.ping_url = str(device.ping_url) if device.ping_url else None
    row.heartbeat_period_s = device.heartbeat_period_s
    row.criticality = device.criticality
    row.updated_at = utc_now()
