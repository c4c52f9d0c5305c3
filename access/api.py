"""access's routes: thin; the decisions live in access.service."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, Response, status

from access.access_log import LogQuery
from access.decisions import Decision, UnknownGate
from access.face_engine import FaceServiceUnavailable, ImageRejected
from access.gates import Gate
from access.idempotency import KEY_PATTERN, KeyReused, RequestKey
from access.schemas import (
    AttemptOut,
    AttemptPage,
    DecisionOut,
    FaceBurstIn,
    GateOut,
    OccupancyOut,
    PassbackResetOut,
    PassIn,
    ReasonIn,
)
from access.service import AccessService
from access.settings import AccessSettings
from common.api import BranchPrincipal, CurrentPrincipal, from_app_state
from common.db import MAX_ROW_ID
from common.security import Principal, Role

router = APIRouter(prefix="/v1")

Service = Annotated[AccessService, Depends(from_app_state("access", AccessService))]
Settings = Annotated[AccessSettings, Depends(from_app_state("settings", AccessSettings))]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        pattern=KEY_PATTERN,
        description="a kiosk's retry with the same key gets the first decision back",
    ),
]
IMAGE_TYPES = {"image/jpeg", "image/png"}
STAFF = frozenset({Role.OPERATOR, Role.BRANCH_OWNER})


def _gate_for(service: AccessService, gate_id: str, principal: Principal, roles: frozenset[Role]) -> Gate:
    try:
        gate = service.gate(gate_id)
    except UnknownGate as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no gate {gate_id} at this site") from exc
    if not principal.has_any_role(roles) or not principal.may_act_for_branch(gate.config.branch_id):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "not permitted for this gate")
    return gate


def _request(key: str | None, *, gate_id: str, principal: Principal, method: str, payload: bytes) -> RequestKey | None:
    if key is None:
        return None
    return RequestKey.of(gate_id=gate_id, caller=principal.subject, key=key, method=method, payload=payload)


def _decision(decision: Decision, response: Response | None = None) -> DecisionOut:
    if response is not None and decision.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    evidence = decision.evidence
    return DecisionOut(
        attempt_id=decision.attempt_id,
        granted=decision.granted,
        reason=decision.reason.value,
        detail=evidence.detail,
        member_id=decision.member_id,
        gate_id=decision.gate_id,
        gate_result=decision.gate_result,
        offline=decision.offline,
        latency_ms=decision.latency_ms,
        similarity=evidence.similarity,
        model=evidence.model,
        cache=evidence.cache,
        timings_ms=evidence.timings_ms,
    )


@contextlib.contextmanager
def _facemodel_refusals() -> Iterator[None]:
    """facemodel's refusals of a frame as the kiosk's answers."""
    try:
        yield
    except ImageRejected as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, exc.reason) from exc
    except FaceServiceUnavailable as exc:
        # The kiosk falls back to the QR reader; the member is not refused for our fault.
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "face recognition unavailable; use the QR code",
            headers={"Retry-After": "5"},
        ) from exc


@router.post("/gates/{gate_id}/face")
async def face_entry(
    gate_id: str,
    request: Request,
    response: Response,
    principal: CurrentPrincipal,
    service: Service,
    key: IdempotencyKey = None,
) -> DecisionOut:
    """A camera frame from the kiosk at ``gate_id`` (device token of that branch)."""
    started = time.perf_counter()
    _gate_for(service, gate_id, principal, frozenset({Role.DEVICE}))
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in IMAGE_TYPES:
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, "send the frame as image/jpeg or image/png")
    image = await request.body()
    if not image:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "empty frame")
    retry = _request(key, gate_id=gate_id, principal=principal, method="face", payload=image)
    try:
        with _facemodel_refusals():
            decision = await service.face_entry(gate_id, image, content_type, started=started, request=retry)
    except KeyReused as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, "Idempotency-Key already used for another request") from exc
    return _decision(decision, response)


@router.post("/gates/{gate_id}/face-burst")
async def face_burst_entry(
    gate_id: str, body: FaceBurstIn, principal: CurrentPrincipal, service: Service
) -> DecisionOut:
    """A burst of 2-4 frames of the head turn the kiosk asked for (branches with active
    liveness; elsewhere the first frame decides). Device token of that branch."""
    started = time.perf_counter()
    _gate_for(service, gate_id, principal, frozenset({Role.DEVICE}))
    frames = body.decoded()
    with _facemodel_refusals():
        decision = await service.face_entry(gate_id, frames[0], "image/jpeg", started=started, burst=frames)
    return _decision(decision)


@router.post("/gates/{gate_id}/pass")
async def pass_entry(
    gate_id: str,
    body: PassIn,
    response: Response,
    principal: CurrentPrincipal,
    service: Service,
    key: IdempotencyKey = None,
) -> DecisionOut:
    """An entry pass (QR code) scanned at ``gate_id``."""
    started = time.perf_counter()
    _gate_for(service, gate_id, principal, frozenset({Role.DEVICE}))
    retry = _request(key, gate_id=gate_id, principal=principal, method="qr", payload=body.code.encode())
    try:
        return _decision(await service.pass_entry(gate_id, body.code, started=started, request=retry), response)
    except KeyReused as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, "Idempotency-Key already used for another request") from exc


@router.post("/gates/{gate_id}/open")
async def remote_open(
    gate_id: str,
    body: ReasonIn,
    response: Response,
    principal: CurrentPrincipal,
    service: Service,
    key: IdempotencyKey = None,
) -> DecisionOut:
    """Open from the console (audited)."""
    started = time.perf_counter()
    _gate_for(service, gate_id, principal, STAFF)
    retry = _request(key, gate_id=gate_id, principal=principal, method="remote", payload=body.reason.encode())
    try:
        decision = await service.remote_open(
            gate_id, actor=principal.subject, reason=body.reason, started=started, request=retry
        )
    except KeyReused as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, "Idempotency-Key already used for another request") from exc
    return _decision(decision, response)


@router.get("/gates")
async def gates(principal: CurrentPrincipal, service: Service) -> list[GateOut]:
    """The gates of the branches the caller acts for: staff and the branch's kiosks only
    (drivers and line states are not for members or helpers)."""
    if not principal.has_any_role(STAFF | {Role.DEVICE}):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "role not permitted")
    return [
        GateOut(
            gate_id=gate.config.gate_id,
            branch_id=gate.config.branch_id,
            direction=gate.config.direction,
            driver=gate.config.driver,
            line="up" if gate.line_up else "down",
            line_detail=gate.driver.line.detail,
            line_down_policy=gate.config.line_down,
            anti_passback=gate.config.anti_passback,
        )
        for gate in service.gates.values()
        if principal.may_act_for_branch(gate.config.branch_id)
    ]


@router.get("/branches/{branch_id}/occupancy")
async def occupancy(branch_id: str, _principal: BranchPrincipal, service: Service, settings: Settings) -> OccupancyOut:
    return OccupancyOut(
        branch_id=branch_id,
        inside=await service.occupancy(branch_id),
        limit=settings.branch(branch_id).occupancy_limit,
    )


@router.post("/branches/{branch_id}/members/{member_id}/passback-reset")
async def passback_reset(
    branch_id: str, member_id: uuid.UUID, body: ReasonIn, principal: BranchPrincipal, service: Service
) -> PassbackResetOut:
    """Let a member who left without badging out in again (audited)."""
    if not principal.has_any_role(STAFF):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "role not permitted")
    was_inside = await service.reset_passback(
        branch_id=branch_id, member_id=member_id, actor=principal.subject, reason=body.reason
    )
    return PassbackResetOut(was_inside=was_inside)


@router.get("/access-log")
async def access_log(
    principal: CurrentPrincipal,
    service: Service,
    branch_id: Annotated[str | None, Query(max_length=64)] = None,
    member_id: uuid.UUID | None = None,
    gate_id: Annotated[str | None, Query(max_length=64)] = None,
    outcome: Literal["granted", "denied"] | None = None,
    method: Literal["face", "qr", "remote"] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    before_id: Annotated[int | None, Query(ge=1, le=MAX_ROW_ID)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> AttemptPage:
    """Attempts, newest first; operators see every branch, branch owners their own."""
    if not principal.has_any_role(STAFF):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "role not permitted")
    branch_ids: list[str] | None
    if principal.has_any_role({Role.OPERATOR}):
        branch_ids = [branch_id] if branch_id else None
    elif branch_id is not None:
        if not principal.may_act_for_branch(branch_id):
            raise HTTPException(status.HTTP_403_FORBIDDEN, "not permitted for this branch")
        branch_ids = [branch_id]
    else:
        branch_ids = sorted(principal.branches)
    for moment in (since, until):
        if moment is not None and moment.tzinfo is None:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "since/until need a timezone")
    query = LogQuery(branch_ids, member_id, gate_id, outcome, method, since, until, before_id, limit)
    items = [AttemptOut.model_validate(row, from_attributes=True) for row in await service.attempts(query)]
    return AttemptPage(items=items, next_before_id=items[-1].id if len(items) == limit else None)
