"""running's HTTP routes (thin): friends, history, GPX, sharing, races, outings, steps.
Live streams are WebSockets on the live port (running.live)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field, model_validator

from common.api import CurrentUserId, from_app_state
from running import analysis, gpx
from running.live import LiveServer
from running.models import Race, RaceEntry
from running.service import Conflict, Forbidden, NotFound, RunningService

router = APIRouter(prefix="/v1")
Service = Annotated[RunningService, Depends(from_app_state("running", RunningService))]
Live = Annotated[LiveServer, Depends(from_app_state("live", LiveServer))]
MAX_GPX_BYTES = 10 * 1024 * 1024


def _problem(exc: Exception) -> HTTPException:
    if isinstance(exc, NotFound):
        return HTTPException(status.HTTP_404_NOT_FOUND, str(exc))
    if isinstance(exc, Forbidden):
        return HTTPException(status.HTTP_403_FORBIDDEN, str(exc))
    return HTTPException(status.HTTP_409_CONFLICT, str(exc))


DomainError = (NotFound, Forbidden, Conflict)


# -- friends ------------------------------------------------------------------------------


@router.get("/friends")
async def friends(user: CurrentUserId, service: Service) -> dict[str, list[uuid.UUID]]:
    return await service.friendships(user)


@router.post("/friends/{other}")
async def befriend(other: uuid.UUID, user: CurrentUserId, service: Service) -> dict[str, str]:
    try:
        return {"status": await service.request_friend(user, other)}
    except DomainError as exc:
        raise _problem(exc) from exc


@router.post("/friends/{other}/accept", status_code=status.HTTP_204_NO_CONTENT)
async def accept(other: uuid.UUID, user: CurrentUserId, service: Service) -> None:
    try:
        await service.accept_friend(user, other)
    except DomainError as exc:
        raise _problem(exc) from exc


@router.delete("/friends/{other}", status_code=status.HTTP_204_NO_CONTENT)
async def unfriend(other: uuid.UUID, user: CurrentUserId, service: Service) -> None:
    await service.remove_friend(user, other)


# -- runs ---------------------------------------------------------------------------------


class RunOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    run_id: uuid.UUID
    user_id: uuid.UUID
    title: str
    status: str
    source: str
    started_at: datetime
    finished_at: datetime | None
    distance_m: float
    moving_s: float
    elapsed_s: float
    race_id: uuid.UUID | None


class RunDetail(RunOut):
    summary: dict[str, Any]
    track: list[tuple[float, float, float]]  # (t, lat, lon) of the points kept


@router.get("/runs")
async def runs(
    user: CurrentUserId,
    service: Service,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    before: datetime | None = None,
) -> list[RunOut]:
    found = await service.runs_of(user, limit=limit, before=before)
    return [RunOut.model_validate(run) for run in found]


@router.get("/runs/{run_id}")
async def run_detail(run_id: uuid.UUID, user: CurrentUserId, service: Service) -> RunDetail:
    try:
        run = await service.watchable_run(user, run_id)
    except DomainError as exc:
        raise _problem(exc) from exc
    if run.track is not None:
        track = [(t, lat, lon) for t, lat, lon in run.track]
    else:  # still live: filter what is stored so far
        points = await service.run_points(run_id)
        track = analysis.replay(points).kept_positions() if points else []
    return RunDetail(**RunOut.model_validate(run).model_dump(), summary=run.summary, track=track)


@router.get("/records")
async def records(user: CurrentUserId, service: Service) -> dict[str, Any]:
    return await service.records(user)


class ShareIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    hours: float = Field(default=3, gt=0, le=24 * 14)


@router.post("/runs/{run_id}/share", status_code=status.HTTP_201_CREATED)
async def share(run_id: uuid.UUID, body: ShareIn, user: CurrentUserId, service: Service) -> dict[str, Any]:
    try:
        token, expires_at = await service.share(user, run_id, body.hours)
    except DomainError as exc:
        raise _problem(exc) from exc
    return {"token": token, "path": f"/ws/share/{token}", "expires_at": expires_at}


@router.get("/runs/{run_id}/gpx")
async def export_gpx(run_id: uuid.UUID, user: CurrentUserId, service: Service) -> Response:
    try:
        run = await service.watchable_run(user, run_id)
    except DomainError as exc:
        raise _problem(exc) from exc
    document = gpx.export(await service.run_points(run_id), name=run.title)
    return Response(
        document,
        media_type="application/gpx+xml",
        headers={"content-disposition": f'attachment; filename="run-{run_id}.gpx"'},
    )


@router.post("/runs/gpx", status_code=status.HTTP_201_CREATED)
async def import_gpx(request: Request, user: CurrentUserId, service: Service) -> RunOut:
    document = await request.body()
    if len(document) > MAX_GPX_BYTES:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, "a GPX file is at most 10 MiB")
    try:
        name, points = gpx.parse(document)
    except gpx.GpxError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"invalid GPX: {exc}") from exc
    return RunOut.model_validate(await service.import_run(user, name, points))


# -- races --------------------------------------------------------------------------------


class RaceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str = Field(min_length=1, max_length=120)
    mode: Literal["distance", "time"]
    target: float = Field(gt=0, description="metres (distance) or seconds (time)")
    invite: list[uuid.UUID] = Field(default_factory=list, max_length=49)
    start_at: datetime | None = None

    @model_validator(mode="after")
    def _sane(self) -> RaceIn:
        if self.mode == "distance" and not 100 <= self.target <= 100_000:
            raise ValueError("a distance race is 100 m to 100 km")
        if self.mode == "time" and not 60 <= self.target <= 6 * 3600:
            raise ValueError("a time race lasts 1 minute to 6 hours")
        if self.start_at is not None:
            if self.start_at.tzinfo is None:
                raise ValueError("start_at needs a timezone")
            if self.start_at < datetime.now(UTC) - timedelta(minutes=1):
                raise ValueError("start_at is in the past")
        return self


class RaceOut(BaseModel):
    race_id: uuid.UUID
    host_id: uuid.UUID
    title: str
    mode: str
    target: float
    status: str
    start_at: datetime | None
    finished_at: datetime | None
    entries: list[dict[str, Any]]


def _race(race: Race, entries: list[RaceEntry]) -> RaceOut:
    ordered = sorted(entries, key=lambda entry: (entry.rank is None, entry.rank or 0, -entry.distance_m))
    return RaceOut(
        race_id=race.race_id,
        host_id=race.host_id,
        title=race.title,
        mode=race.mode,
        target=race.target,
        status=race.status,
        start_at=race.start_at,
        finished_at=race.finished_at,
        entries=[
            {
                "user_id": str(entry.user_id),
                "status": entry.status,
                "distance_m": entry.distance_m,
                "finish_s": entry.finish_s,
                "rank": entry.rank,
            }
            for entry in ordered
        ],
    )


@router.post("/races", status_code=status.HTTP_201_CREATED)
async def create_race(body: RaceIn, user: CurrentUserId, service: Service) -> RaceOut:
    try:
        race = await service.create_race(
            user, title=body.title, mode=body.mode, target=body.target, invite=body.invite, start_at=body.start_at
        )
        found, entries = await service.race(user, race.race_id)
    except DomainError as exc:
        raise _problem(exc) from exc
    return _race(found, list(entries))


@router.get("/races/{race_id}")
async def race(race_id: uuid.UUID, user: CurrentUserId, service: Service) -> RaceOut:
    try:
        found, entries = await service.race(user, race_id)
    except DomainError as exc:
        raise _problem(exc) from exc
    return _race(found, list(entries))


@router.post("/races/{race_id}/join", status_code=status.HTTP_204_NO_CONTENT)
async def join_race(race_id: uuid.UUID, user: CurrentUserId, service: Service) -> None:
    try:
        await service.join_race(user, race_id)
    except DomainError as exc:
        raise _problem(exc) from exc


@router.post("/races/{race_id}/start")
async def start_race(race_id: uuid.UUID, user: CurrentUserId, service: Service) -> RaceOut:
    try:
        await service.start_race(user, race_id)
        found, entries = await service.race(user, race_id)
    except DomainError as exc:
        raise _problem(exc) from exc
    return _race(found, list(entries))


# -- outings ------------------------------------------------------------------------------


class OutingIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str = Field(min_length=1, max_length=120)
    members: list[uuid.UUID] = Field(min_length=1, max_length=19)
    minutes: int = Field(default=90, ge=5, le=12 * 60)


@router.post("/outings", status_code=status.HTTP_201_CREATED)
async def create_outing(body: OutingIn, user: CurrentUserId, service: Service) -> dict[str, Any]:
    try:
        outing = await service.create_outing(user, title=body.title, members=body.members, minutes=body.minutes)
    except DomainError as exc:
        raise _problem(exc) from exc
    return {
        "outing_id": outing.outing_id,
        "members": outing.members,
        "ends_at": outing.ends_at,
        "path": f"/ws/outings/{outing.outing_id}",
    }


@router.delete("/outings/{outing_id}", status_code=status.HTTP_204_NO_CONTENT)
async def end_outing(outing_id: uuid.UUID, user: CurrentUserId, service: Service, live: Live) -> None:
    try:
        await service.close_outing(user, outing_id)
    except DomainError as exc:
        raise _problem(exc) from exc
    await live.end_outing(outing_id)


# -- steps --------------------------------------------------------------------------------


class StepsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    device_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")
    steps: int = Field(ge=0, le=200_000)


@router.put("/steps/{day}")
async def upload_steps(day: date, body: StepsIn, user: CurrentUserId, service: Service) -> dict[str, Any]:
    today = datetime.now(UTC).date()
    # A day ahead for time zones east of UTC; a month back for a watch that synced late.
    if not today - timedelta(days=31) <= day <= today + timedelta(days=1):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "steps are accepted for the last 31 days only")
    return await service.upload_steps(user, day, body.device_id, body.steps)


@router.get("/steps/ranking")
async def step_ranking(
    user: CurrentUserId,
    service: Service,
    period: Literal["day", "week"] = "day",
    day: date | None = None,
) -> list[dict[str, Any]]:
    return await service.step_ranking(user, period=period, day=day or datetime.now(UTC).date())
