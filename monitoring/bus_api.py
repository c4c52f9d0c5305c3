"""The event bus's backlog and parking lot for the operations dashboard: thin; the work is
in common.events.parking. Operators only, checked here (the gateway passes
``/api/monitoring`` to every signed-in caller)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, status

from common.api import require_roles
from common.events.envelope import utc_now
from common.events.parking import (
    BusUnavailable,
    ForgottenByTheInbox,
    NotParked,
    ParkedDetail,
    ParkedEvent,
    ParkingLot,
    ReplayRefused,
    inbox_horizon,
)
from common.security import Principal, Role
from monitoring.schemas import BacklogOut, ReplayAllIn, ReplayedOut

router = APIRouter(prefix="/v1/bus")

Operator = Annotated[Principal, Depends(require_roles(Role.OPERATOR))]
# A consumer's name: a service, or a service and its site (access keeps a queue per site).
SERVICE_PATTERN = r"^[a-z][a-z0-9_.-]{0,62}$"
ServiceName = Annotated[str, Path(pattern=SERVICE_PATTERN, description="A consumer on the bus, e.g. access.main.")]
ParkedId = Annotated[str, Path(pattern=r"^[A-Za-z0-9._:-]{1,80}$", description="The id the listing gave.")]
RETRY_AFTER = {"Retry-After": "5"}
# Says which 409 a refused replay is: the console offers to replay an old event anyway.
OLDER_THAN_INBOX = {"X-SmartGym-Refusal": "older-than-inbox"}


class BusOperations:
    """What the routes need: the parking lot and the services it may show."""

    def __init__(
        self, lot: ParkingLot | None, configured: tuple[str, ...], *, explicit: bool, inbox_retention: timedelta
    ) -> None:
        self.lot = lot
        self.configured = configured
        self.inbox_retention = inbox_retention
        # Named by the installation: shown even without a queue (a consumer that is missing).
        # Guessed from the installed services: only those with a queue (some only publish).
        self.explicit = explicit

    def services(self) -> list[str]:
        return self.lot.known_services(configured=self.configured) if self.lot is not None else []

    def remembered_since(self) -> datetime:
        return inbox_horizon(retention=self.inbox_retention, now=utc_now())


async def _operations(request: Request) -> BusOperations:
    operations = getattr(request.app.state, "bus_operations", None)
    if not isinstance(operations, BusOperations):
        raise RuntimeError("app.state.bus_operations is not set")
    return operations


Operations = Annotated[BusOperations, Depends(_operations)]


def _lot(operations: BusOperations, service: str | None = None) -> ParkingLot:
    if operations.lot is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "this service has no event bus")
    if service is not None and service not in operations.services():
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no service {service} on the bus")
    return operations.lot


def _unavailable(exc: BusUnavailable) -> HTTPException:
    return HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"event bus unavailable: {exc}", headers=RETRY_AFTER)


@router.get("/backlog")
async def backlog(_: Operator, operations: Operations) -> BacklogOut:
    """Per service: messages waiting, consumers, messages in back-off, messages parked."""
    lot = _lot(operations)
    try:
        found = await lot.backlog(services=operations.services())
    except BusUnavailable as exc:
        raise _unavailable(exc) from exc
    out = BacklogOut.model_validate(asdict(found))
    if not operations.explicit:
        out.services = [row for row in out.services if row.exists]
    return out


@router.get("/parked")
async def parked(
    _: Operator,
    operations: Operations,
    service: Annotated[str | None, Query(pattern=SERVICE_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[ParkedEvent]:
    """Parked messages, oldest first per service (one service, or every one)."""
    lot = _lot(operations, service)
    found: list[ParkedEvent] = []
    try:
        for name in [service] if service is not None else operations.services():
            found.extend(await lot.parked(service=name, limit=limit))
    except BusUnavailable as exc:
        raise _unavailable(exc) from exc
    return found[:limit]


@router.get("/parked/{service}/{parked_id}")
async def inspect(_: Operator, operations: Operations, service: ServiceName, parked_id: ParkedId) -> ParkedDetail:
    """One parked message with its headers and payload."""
    lot = _lot(operations, service)
    try:
        item = await lot.inspect(service=service, parked_id=parked_id)
    except NotParked as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    except BusUnavailable as exc:
        raise _unavailable(exc) from exc
    return item


@router.post("/parked/{service}/{parked_id}/replay")
async def replay(
    principal: Operator,
    operations: Operations,
    service: ServiceName,
    parked_id: ParkedId,
    older_than_inbox: Annotated[
        bool,
        Query(
            description=(
                "Replay an event older than its service's inbox remembers (refused with 409 "
                "otherwise): only when no other copy of it was ever applied."
            )
        ),
    ] = False,
) -> ParkedEvent:
    """Hand one parked message back to its service's queue, once: a second request for the
    same message answers 404."""
    lot = _lot(operations, service)
    since = None if older_than_inbox else operations.remembered_since()
    try:
        item = await lot.replay(
            service=service, parked_id=parked_id, requested_by=principal.subject, remembered_since=since
        )
    except NotParked as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    except ForgottenByTheInbox as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc), headers=OLDER_THAN_INBOX) from exc
    except ReplayRefused as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    except BusUnavailable as exc:
        raise _unavailable(exc) from exc
    return item


@router.post("/parked/{service}/replay")
async def replay_all(
    principal: Operator, operations: Operations, service: ServiceName, body: ReplayAllIn | None = None
) -> ReplayedOut:
    """Hand back every message parked now (up to ``limit``, oldest first). Events older
    than their service's inbox remembers stay parked (``kept``): each can be replayed on
    its own once an operator knows no copy of it was applied."""
    lot = _lot(operations, service)
    limit = (body or ReplayAllIn()).limit
    try:
        outcome = await lot.replay_all(
            service=service, limit=limit, requested_by=principal.subject, remembered_since=operations.remembered_since()
        )
    except ReplayRefused as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    except BusUnavailable as exc:
        raise _unavailable(exc) from exc
    return ReplayedOut(replayed=outcome.replayed, kept=outcome.kept, kept_count=outcome.kept_count)
