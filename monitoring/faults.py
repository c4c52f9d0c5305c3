"""The fault log behind the operations dashboard: the watch's changes stored with their
events in one unit of work, faults listed and acknowledged, and unacknowledged critical
faults handed to the operations team."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import cast

from sqlalchemy import Table, and_, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from common.events.envelope import utc_now
from common.events.outbox import UnitOfWork
from common.kernel import ServiceKernel
from contracts import Criticality, EquipmentFault, EquipmentFaultEscalated, EquipmentRecovered
from monitoring.errors import NotFound
from monitoring.models import Equipment, Fault, StateChange
from monitoring.watch import Change

_EQUIPMENT = cast(Table, Equipment.__table__)
_SET_HEALTH = (
    update(_EQUIPMENT)
    .where(_EQUIPMENT.c.device_id == bindparam("device"), _EQUIPMENT.c.created_at == bindparam("registered"))
    .values(
        health=bindparam("health"), health_reason=bindparam("health_reason"), health_since=bindparam("health_since")
    )
)


class FaultLog:
    """Stores the watch's changes (audit rows, faults, the device's health and the events)
    and answers for the faults."""

    def __init__(self, kernel: ServiceKernel) -> None:
        self._kernel = kernel

    async def record(self, changes: list[Change]) -> None:
        async with self._kernel.unit_of_work() as uow:
            if any(change.announced for change in changes):
                changes = await _on_devices_still_registered(uow.session, changes)
                if not changes:
                    return
            for change in changes:
                uow.session.add(_audit_row(change))
                if change.opens is not None:
                    _open_fault(uow, change, fault_id=change.opens)
                if change.closes is not None:
                    await _close_fault(uow, change, fault_id=change.closes)
            await _set_health(uow.session, changes)

    async def faults(self, *, branch_id: str | None, open_only: bool, limit: int) -> Sequence[Fault]:
        query = select(Fault).order_by(Fault.opened_at.desc()).limit(limit)
        if branch_id is not None:
            query = query.where(Fault.branch_id == branch_id)
        if open_only:
            query = query.where(Fault.closed_at.is_(None))
        async with self._kernel.db.sessions() as session:
            return (await session.scalars(query)).all()

    async def fault(self, fault_id: uuid.UUID) -> Fault:
        async with self._kernel.db.sessions() as session:
            row = await session.get(Fault, fault_id)
        if row is None:
            raise NotFound(str(fault_id))
        return row

    async def acknowledge(self, fault_id: uuid.UUID, by: str) -> Fault:
        """Somebody took the fault: it will not be escalated. Acknowledging twice is harmless."""
        async with self._kernel.db.sessions() as session, session.begin():
            row = await session.get(Fault, fault_id)
            if row is None:
                raise NotFound(str(fault_id))
            if row.acknowledged_at is None:
                row.acknowledged_at, row.acknowledged_by = utc_now(), by[:80]
        return row

    async def escalate_overdue(self, after: timedelta) -> int:
        """Hand unacknowledged critical faults to the operations team (once each)."""
        now = utc_now()
        async with self._kernel.unit_of_work() as uow:
            overdue = (
                await uow.session.scalars(
                    select(Fault)
                    .where(
                        and_(
                            Fault.closed_at.is_(None),
                            Fault.acknowledged_at.is_(None),
                            Fault.escalated_at.is_(None),
                            Fault.criticality == "critical",
                            Fault.opened_at < now - after,
                        )
                    )
                    .with_for_update(skip_locked=True)
                    .limit(500)
                )
            ).all()
            names = await _names(uow.session, [fault.device_id for fault in overdue])
            for fault in overdue:
                fault.escalated_at = now
                kind, name = names.get(fault.device_id, ("other", fault.device_id))
                uow.emit(
                    EquipmentFaultEscalated(
                        fault_id=fault.fault_id,
                        device_id=fault.device_id,
                        branch_id=fault.branch_id,
                        kind=kind,
                        name=name,
                        reason=fault.reason,
                        detected_at=fault.opened_at,
                    )
                )
        return len(overdue)


async def _names(session: AsyncSession, device_ids: list[str]) -> dict[str, tuple[str, str]]:
    if not device_ids:
        return {}
    rows = await session.execute(
        select(Equipment.device_id, Equipment.kind, Equipment.name).where(Equipment.device_id.in_(device_ids))
    )
    return {device_id: (kind, name) for device_id, kind, name in rows}


async def _on_devices_still_registered(session: AsyncSession, changes: list[Change]) -> list[Change]:
    """The changes left once announcements about devices retired since they were observed
    (even if registered again under the same id) are dropped: their faults were withdrawn
    with them. Unannounced changes stay: their audit rows are the device's history up to
    its retirement, listed under its id (a registration under the same id lists them too).

    Only a batch that announces anything pays for this (few do; none when 20,000 devices
    first answer). It locks all of the batch's device rows in one statement, so the health
    UPDATE waits for no further row, and a device's row is always locked before its faults,
    as ``Registry.retire`` does: one order, no deadlock."""
    present = {
        (device_id, registered_at)
        for device_id, registered_at in await session.execute(
            select(Equipment.device_id, Equipment.created_at)
            .where(Equipment.device_id.in_(sorted({change.spec.device_id for change in changes})))
            .order_by(Equipment.device_id)
            .with_for_update()
        )
    }
    return [
        change
        for change in changes
        if not change.announced or (change.spec.device_id, change.spec.registered_at) in present
    ]


def _audit_row(change: Change) -> StateChange:
    spec = change.spec
    return StateChange(
        device_id=spec.device_id,
        branch_id=spec.branch_id,
        from_health=change.previous.value,
        to_health=change.health.value,
        reason=change.reason[:200],
        at=change.at,
        announced=change.announced,
        fault_id=change.opens or change.closes,
    )


def _open_fault(uow: UnitOfWork, change: Change, *, fault_id: uuid.UUID) -> None:
    spec = change.spec
    uow.session.add(
        Fault(
            fault_id=fault_id,
            device_id=spec.device_id,
            branch_id=spec.branch_id,
            criticality=spec.criticality,
            reason=change.reason[:200],
            opened_at=change.at,
        )
    )
    uow.emit(
        EquipmentFault(
            fault_id=fault_id,
            device_id=spec.device_id,
            branch_id=spec.branch_id,
            kind=spec.kind,
            name=spec.name,
            criticality=cast(Criticality, spec.criticality),
            reason=change.reason[:200],
            detected_at=change.at,
        )
    )


async def _close_fault(uow: UnitOfWork, change: Change, *, fault_id: uuid.UUID) -> None:
    closed = await uow.session.scalar(
        update(Fault)
        .where(Fault.fault_id == fault_id, Fault.closed_at.is_(None))
        .values(closed_at=change.at)
        .returning(Fault.fault_id)
    )
    if closed is None:
        return  # already closed (withdrawn): its last event has been sent
    spec = change.spec
    opened = change.fault_opened_at or change.at
    uow.emit(
        EquipmentRecovered(
            fault_id=fault_id,
            device_id=spec.device_id,
            branch_id=spec.branch_id,
            kind=spec.kind,
            name=spec.name,
            recovered_at=change.at,
            down_for_s=max(0.0, (change.at - opened).total_seconds()),
        )
    )


async def _set_health(session: AsyncSession, changes: list[Change]) -> None:
    """Each device's latest health in one statement (an UPDATE per change was most of the
    work when 20,000 devices first answered), taking the row locks in key order. A
    table-level UPDATE: a retired device's row is simply not there, or is a later
    registration's, which it leaves alone (the ORM's bulk form raised StaleDataError, and
    the writer retried the batch for ever)."""
    latest = {change.spec.device_id: change for change in changes}
    await session.execute(
        _SET_HEALTH,
        [
            {
                "device": device_id,
                "registered": change.spec.registered_at,
                "health": change.health.value,
                "health_reason": change.reason[:200],
                "health_since": change.at,
            }
            for device_id, change in sorted(latest.items())
        ],
    )
