"""monitoring's routes for the operations dashboard and branch owners: thin; the work is
in monitoring.registry, monitoring.faults and monitoring.watch."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Query, Request, status
from fastapi.responses import StreamingResponse

from common.api import CurrentPrincipal, from_app_state
from common.security import Principal, Role
from monitoring.egress import EgressRefused
from monitoring.errors import Conflict, NotFound
from monitoring.faults import FaultLog
from monitoring.models import Equipment, Fault, MaintenanceWindow, StateChange
from monitoring.registry import EquipmentRegistry, Registered
from monitoring.schemas import (
    EquipmentIn,
    EquipmentOut,
    FaultOut,
    MaintenanceIn,
    MaintenanceOut,
    RegisteredOut,
    StateChangeOut,
)
from monitoring.settings import MonitoringSettings
from monitoring.watch import Change, EquipmentWatch

router = APIRouter(prefix="/v1")

Registry = Annotated[EquipmentRegistry, Depends(from_app_state("registry", EquipmentRegistry))]
Faults = Annotated[FaultLog, Depends(from_app_state("faults", FaultLog))]
Watch = Annotated[EquipmentWatch, Depends(from_app_state("watch", EquipmentWatch))]
Settings = Annotated[MonitoringSettings, Depends(from_app_state("settings", MonitoringSettings))]
STAFF = frozenset({Role.OPERATOR, Role.BRANCH_OWNER})
MAX_BULK = 10_000
STREAM_KEEPALIVE_S = 15.0


def _staff_for(principal: Principal, branch_id: str) -> None:
    if not principal.has_any_role(STAFF) or not principal.may_act_for_branch(branch_id):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "not permitted for this branch")


async def _device_for(registry: EquipmentRegistry, device_id: str, principal: Principal) -> Equipment:
    if not principal.has_any_role(STAFF):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "role not permitted")
    try:
        row = await registry.get(device_id)
    except NotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no device {device_id}") from exc
    _staff_for(principal, row.branch_id)
    return row


def _equipment(row: Equipment, live: dict[str, Any] | None = None) -> EquipmentOut:
    return EquipmentOut(
        device_id=row.device_id,
        branch_id=row.branch_id,
        kind=row.kind,
        name=row.name,
        address=row.address,
        ping_url=row.ping_url,
        heartbeat_period_s=row.heartbeat_period_s,
        criticality=row.criticality,
        health=row.health,
        health_reason=row.health_reason,
        health_since=row.health_since,
        live=live,
    )


def _registered(item: Registered) -> RegisteredOut:
    return RegisteredOut(**_equipment(item.equipment).model_dump(), token=item.token)


def _fault(row: Fault) -> FaultOut:
    return FaultOut.model_validate(row, from_attributes=True)


@router.post("/equipment", status_code=status.HTTP_201_CREATED)
async def register(device: EquipmentIn, principal: CurrentPrincipal, registry: Registry) -> RegisteredOut:
    _staff_for(principal, device.branch_id)
    try:
        return _registered(await registry.register(device))
    except Conflict as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    except EgressRefused as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"ping_url refused: {exc.reason}") from exc


@router.put("/equipment")
async def register_many(
    devices: Annotated[list[EquipmentIn], Body(max_length=MAX_BULK)],
    principal: CurrentPrincipal,
    registry: Registry,
    settings: Settings,
) -> list[RegisteredOut]:
    """Register or re-register a batch (an installer's import): each device gets a fresh
    token. Staff of every branch named; an id already held by another branch is refused."""
    per_branch = Counter(device.branch_id for device in devices)
    for branch_id in per_branch:
        _staff_for(principal, branch_id)
    cap = settings.monitoring_bulk_max_per_branch
    if any(count > cap for count in per_branch.values()):
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, f"at most {cap} devices per branch in one call; split the import"
        )
    try:
        return [_registered(item) for item in await registry.register_many(devices)]
    except Conflict as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    except EgressRefused as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"ping_url refused: {exc.reason}") from exc


@router.get("/equipment/{device_id}")
async def device(device_id: str, principal: CurrentPrincipal, registry: Registry, watch: Watch) -> EquipmentOut:
    row = await _device_for(registry, device_id, principal)
    return _equipment(row, watch.snapshot(device_id))


@router.put("/equipment/{device_id}")
async def update(device_id: str, device: EquipmentIn, principal: CurrentPrincipal, registry: Registry) -> EquipmentOut:
    if device.device_id != device_id:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "device_id in the body must match the path")
    await _device_for(registry, device_id, principal)
    try:
        return _equipment(await registry.update(device))
    except Conflict as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    except EgressRefused as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"ping_url refused: {exc.reason}") from exc


@router.post("/equipment/{device_id}/token")
async def rotate_token(device_id: str, principal: CurrentPrincipal, registry: Registry) -> RegisteredOut:
    await _device_for(registry, device_id, principal)
    return _registered(await registry.rotate_token(device_id))


@router.delete("/equipment/{device_id}", status_code=status.HTTP_204_NO_CONTENT)
async def retire(device_id: str, principal: CurrentPrincipal, registry: Registry) -> None:
    await _device_for(registry, device_id, principal)
    await registry.retire(device_id)


@router.get("/equipment/{device_id}/history")
async def history(
    device_id: str,
    principal: CurrentPrincipal,
    registry: Registry,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[StateChangeOut]:
    await _device_for(registry, device_id, principal)
    rows: list[StateChange] = list(await registry.history(device_id, limit))
    return [StateChangeOut.model_validate(row, from_attributes=True) for row in rows]


@router.post("/equipment/{device_id}/maintenance", status_code=status.HTTP_201_CREATED)
async def add_maintenance(
    device_id: str, window: MaintenanceIn, principal: CurrentPrincipal, registry: Registry
) -> MaintenanceOut:
    await _device_for(registry, device_id, principal)
    row = await registry.add_maintenance(device_id, window, by=principal.subject)
    return MaintenanceOut.model_validate(row, from_attributes=True)


@router.get("/equipment/{device_id}/maintenance")
async def maintenance(device_id: str, principal: CurrentPrincipal, registry: Registry) -> list[MaintenanceOut]:
    await _device_for(registry, device_id, principal)
    rows: list[MaintenanceWindow] = list(await registry.maintenance_of(device_id))
    return [MaintenanceOut.model_validate(row, from_attributes=True) for row in rows]


@router.get("/branches/{branch_id}/equipment")
async def branch_status(
    branch_id: str, principal: CurrentPrincipal, registry: Registry, watch: Watch
) -> list[EquipmentOut]:
    _staff_for(principal, branch_id)
    return [_equipment(row, watch.snapshot(row.device_id)) for row in await registry.of_branch(branch_id)]


@router.get("/faults")
async def faults(
    principal: CurrentPrincipal,
    fault_log: Faults,
    branch_id: str | None = None,
    open_only: Annotated[bool, Query(alias="open")] = True,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[FaultOut]:
    if branch_id is None and Role.OPERATOR not in principal.roles:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "only operators see every branch; pass branch_id")
    if branch_id is not None:
        _staff_for(principal, branch_id)
    return [_fault(row) for row in await fault_log.faults(branch_id=branch_id, open_only=open_only, limit=limit)]


@router.post("/faults/{fault_id}/ack")
async def acknowledge(fault_id: uuid.UUID, principal: CurrentPrincipal, fault_log: Faults) -> FaultOut:
    try:
        found = await fault_log.fault(fault_id)
    except NotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such fault") from exc
    _staff_for(principal, found.branch_id)
    return _fault(await fault_log.acknowledge(fault_id, by=principal.subject))


@router.get("/stream", response_class=StreamingResponse, responses={200: {"content": {"text/event-stream": {}}}})
async def stream(
    request: Request, principal: CurrentPrincipal, watch: Watch, branch_id: str | None = None
) -> StreamingResponse:
    """Server-Sent Events: every health change, as it is recorded (one branch, or all for operators)."""
    if branch_id is None and Role.OPERATOR not in principal.roles:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "only operators watch every branch; pass branch_id")
    if branch_id is not None:
        _staff_for(principal, branch_id)
    queue: asyncio.Queue[list[Change]] = asyncio.Queue(maxsize=1000)
    lagging = asyncio.Event()

    def deliver(changes: list[Change]) -> None:
        mine = [change for change in changes if branch_id is None or change.spec.branch_id == branch_id]
        if not mine:
            return
        try:
            queue.put_nowait(mine)
        except asyncio.QueueFull:
            # A reader this far behind is told to re-read the status and reconnect.
            watch.remove_listener(deliver)
            lagging.set()

    async def events() -> AsyncIterator[str]:
        watch.add_listener(deliver)
        try:
            yield ": connected\n\n"
            while not await request.is_disconnected():
                if lagging.is_set() and queue.empty():
                    yield "event: resync\ndata: {}\n\n"
                    return
                try:
                    changes = await asyncio.wait_for(queue.get(), STREAM_KEEPALIVE_S)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                for change in changes:
                    yield f"event: equipment\ndata: {json.dumps(change.public())}\n\n"
        finally:
            watch.remove_listener(deliver)

    return StreamingResponse(events(), media_type="text/event-stream", headers={"cache-control": "no-store"})
