"""running's HTTP routes (thin): friends, history, GPX, sharing, races, outings, steps.
Live streams are WebSockets on the live port (running.live).

Who may call: every route needs a signed-in member (``CurrentUserId``) and acts on that
member's own account; a run is visible to its runner and their accepted friends, a race
to its entrants, an outing to its members (the domain modules check). The one exception
is ``/v1/shared/{token}``: an unexpired share link is its own credential. Whatever of a
track others see leaves out the runner's privacy zones (running.privacy).

A domain refusal reaches the caller as its status (404, 403, 409, 429, or 503 while Strava
is away) through one mapping, ``REFUSAL_STATUS``, instead of a handler per route."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, Query, Request, Response, status
from fastapi.responses import JSONResponse

from common.api import CurrentUserId, from_app_state
from running import archives, gpx, imports
from running.analytics import AnalyticsService
from running.coach import Coach
from running.errors import Conflict, Forbidden, NotFound, TooMany
from running.friends import FriendService
from running.history import HistoryService
from running.live import LiveServer
from running.outings import OutingService
from running.profiles import ProfileService
from running.races import RaceService
from running.runs import RunService
from running.schemas import (
    CoachIn,
    FriendAdded,
    FriendCodeIn,
    FriendCodeOut,
    FriendsOut,
    OutingIn,
    OutingOut,
    ProfileIn,
    RaceIn,
    RaceOut,
    RunDetail,
    RunOut,
    RunShoeIn,
    ShareIn,
    ShoeIn,
    StepGoalIn,
    StepsIn,
    StravaConnectIn,
    WorkoutIn,
)
from running.steps import StepService
from running.sync import StravaSync, StravaUnavailable
from running.workouts import WorkoutService

router = APIRouter(prefix="/v1")
Friends = Annotated[FriendService, Depends(from_app_state("friends", FriendService))]
Runs = Annotated[RunService, Depends(from_app_state("runs", RunService))]
History = Annotated[HistoryService, Depends(from_app_state("history", HistoryService))]
Races = Annotated[RaceService, Depends(from_app_state("races", RaceService))]
Outings = Annotated[OutingService, Depends(from_app_state("outings", OutingService))]
Steps = Annotated[StepService, Depends(from_app_state("steps", StepService))]
Workouts = Annotated[WorkoutService, Depends(from_app_state("workouts", WorkoutService))]
Analytics = Annotated[AnalyticsService, Depends(from_app_state("analytics", AnalyticsService))]
Strava = Annotated[StravaSync, Depends(from_app_state("strava", StravaSync))]
CoachDep = Annotated[Coach, Depends(from_app_state("coach", Coach))]
Profiles = Annotated[ProfileService, Depends(from_app_state("profiles", ProfileService))]
Live = Annotated[LiveServer, Depends(from_app_state("live", LiveServer))]
MAX_IMPORT_BYTES = 32 * 1024 * 1024


# A route calls the domain and lets its refusal through: one mapping for every route, so
# none can forget one and answer a refusal with a 500. The body is FastAPI's own for an
# HTTPException ({"detail": reason}).
REFUSAL_STATUS: dict[type[Exception], int] = {
    NotFound: status.HTTP_404_NOT_FOUND,
    Forbidden: status.HTTP_403_FORBIDDEN,
    Conflict: status.HTTP_409_CONFLICT,
    TooMany: status.HTTP_429_TOO_MANY_REQUESTS,
    StravaUnavailable: status.HTTP_503_SERVICE_UNAVAILABLE,  # the app retries after Retry-After
}


def _answer(code: int) -> Callable[[Request, Exception], Awaitable[JSONResponse]]:
    headers = {"Retry-After": "60"} if code == status.HTTP_503_SERVICE_UNAVAILABLE else None

    async def refused(_request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=code, headers=headers)

    return refused


def answer_refusals(app: FastAPI) -> None:
    """Every domain refusal as its HTTP status, for the routes of ``app``."""
    for kind, code in REFUSAL_STATUS.items():
        app.add_exception_handler(kind, _answer(code))


# -- friends ------------------------------------------------------------------------------


@router.get("/friends")
async def friends(user: CurrentUserId, service: Friends) -> FriendsOut:
    return FriendsOut.model_validate(await service.friendships(user=user))


# Before /friends/{other}: these paths would otherwise be read as a user id.
@router.get("/friends/code")
async def friend_code(user: CurrentUserId, service: Friends) -> FriendCodeOut:
    """Own code only: what the member gives a friend so that the friend can find them."""
    return FriendCodeOut(code=await service.friend_code(user=user))


@router.post("/friends/code")
async def renew_friend_code(user: CurrentUserId, service: Friends) -> FriendCodeOut:
    """Own code only: a new one; the old one finds nobody any more."""
    return FriendCodeOut(code=await service.friend_code(user=user, renew=True))


@router.post("/friends/requests")
async def befriend_by_code(body: FriendCodeIn, user: CurrentUserId, service: Friends) -> FriendAdded:
    """Any member, for themselves: a request to the holder of the code (accepted at once if
    they had asked first). A code matching nobody is a 404; many a day, a 429."""
    return FriendAdded.model_validate(await service.request_by_code(user=user, code=body.code))


@router.post("/friends/{other}")
async def befriend(other: uuid.UUID, user: CurrentUserId, service: Friends) -> dict[str, str]:
    return {"status": await service.request_friend(user=user, other=other)}


@router.post("/friends/{other}/accept", status_code=status.HTTP_204_NO_CONTENT)
async def accept(other: uuid.UUID, user: CurrentUserId, service: Friends) -> None:
    await service.accept_friend(user=user, requester=other)


@router.delete("/friends/{other}", status_code=status.HTTP_204_NO_CONTENT)
async def unfriend(other: uuid.UUID, user: CurrentUserId, service: Friends) -> None:
    await service.remove_friend(user=user, other=other)


# -- runs ---------------------------------------------------------------------------------


@router.get("/runs")
async def runs(
    user: CurrentUserId,
    history: History,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    before: datetime | None = None,
) -> list[RunOut]:
    found = await history.runs_of(user=user, limit=limit, before=before)
    return [RunOut.model_validate(run) for run in found]


@router.get("/runs/{run_id}")
async def run_detail(run_id: uuid.UUID, user: CurrentUserId, service: Runs) -> RunDetail:
    """The runner's own run whole; a friend's without what lies in its privacy zones."""
    run = await service.watchable_run(viewer=user, run_id=run_id)
    track = await service.shown_track(run=run, viewer=user)
    return RunDetail(**RunOut.model_validate(run).model_dump(), summary=run.summary, track=track)


@router.get("/shared/{token}")
async def shared_run(token: Annotated[str, Path(min_length=16, max_length=64)], service: Runs) -> RunDetail:
    """Anyone holding an unexpired share link (the link is the credential): the run without
    what lies in its runner's privacy zones."""
    run = await service.shared_run(token=token)
    track = await service.shown_track(run=run, viewer=None)
    return RunDetail(**RunOut.model_validate(run).model_dump(), summary=run.summary, track=track)


@router.get("/records")
async def records(user: CurrentUserId, history: History) -> dict[str, Any]:
    return await history.records(user=user)


@router.post("/runs/{run_id}/share", status_code=status.HTTP_201_CREATED)
async def share(run_id: uuid.UUID, body: ShareIn, user: CurrentUserId, service: Runs) -> dict[str, Any]:
    token, expires_at = await service.share(user=user, run_id=run_id, hours=body.hours)
    return {"token": token, "path": f"/ws/share/{token}", "expires_at": expires_at}


@router.get("/runs/{run_id}/gpx")
async def export_gpx(run_id: uuid.UUID, user: CurrentUserId, service: Runs) -> Response:
    run = await service.watchable_run(viewer=user, run_id=run_id)
    # A friend's export leaves out the runner's privacy zones, as their view of it does.
    document = gpx.export(await service.shown_run_points(run=run, viewer=user), name=run.title)
    return Response(
        document,
        media_type="application/gpx+xml",
        headers={"content-disposition": f'attachment; filename="run-{run_id}.gpx"'},
    )


async def _body(request: Request) -> bytes:
    document = bytearray()
    async for piece in request.stream():
        document += piece
        if len(document) > MAX_IMPORT_BYTES:
            raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, "a file is at most 32 MiB")
    return bytes(document)


@router.post("/runs/import", status_code=status.HTTP_201_CREATED)
@router.post("/runs/gpx", status_code=status.HTTP_201_CREATED)
async def import_run(request: Request, response: Response, user: CurrentUserId, history: History) -> RunOut:
    """A run from a GPX, TCX or FIT file (told apart by content). The same run again
    answers 200 with the run already stored."""
    document = await _body(request)
    try:
        parsed = await asyncio.to_thread(imports.parse, document)
    except imports.ImportRefused as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
    run, created = await history.import_run(user=user, title=parsed.name, points=parsed.points, source=parsed.source)
    if not created:
        response.status_code = status.HTTP_200_OK
    return RunOut.model_validate(run)


@router.post("/runs/archive")
async def import_archive(request: Request, user: CurrentUserId, history: History) -> dict[str, Any]:
    """Own history: a zip of FIT, TCX and GPX files (``.gz`` each too), each file imported
    as if uploaded alone and answered one by one; runs already stored are ``known``."""
    try:
        return await history.import_archive(user=user, document=await _body(request))
    except archives.ArchiveRefused as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc


# -- races --------------------------------------------------------------------------------


@router.post("/races", status_code=status.HTTP_201_CREATED)
async def create_race(body: RaceIn, user: CurrentUserId, service: Races) -> RaceOut:
    race = await service.create_race(
        host=user, title=body.title, mode=body.mode, target=body.target, invite=body.invite, start_at=body.start_at
    )
    found, entries = await service.race(viewer=user, race_id=race.race_id)
    return RaceOut.of(found, entries)


@router.get("/races/{race_id}")
async def race(race_id: uuid.UUID, user: CurrentUserId, service: Races) -> RaceOut:
    found, entries = await service.race(viewer=user, race_id=race_id)
    return RaceOut.of(found, entries)


@router.post("/races/{race_id}/join", status_code=status.HTTP_204_NO_CONTENT)
async def join_race(race_id: uuid.UUID, user: CurrentUserId, service: Races) -> None:
    await service.join_race(user=user, race_id=race_id)


@router.post("/races/{race_id}/start")
async def start_race(race_id: uuid.UUID, user: CurrentUserId, service: Races) -> RaceOut:
    await service.start_race(user=user, race_id=race_id)
    found, entries = await service.race(viewer=user, race_id=race_id)
    return RaceOut.of(found, entries)


# -- outings ------------------------------------------------------------------------------


@router.post("/outings", status_code=status.HTTP_201_CREATED)
async def create_outing(body: OutingIn, user: CurrentUserId, service: Outings) -> OutingOut:
    outing = await service.create_outing(owner=user, title=body.title, members=body.members, minutes=body.minutes)
    return OutingOut(
        outing_id=outing.outing_id,
        members=outing.members,
        ends_at=outing.ends_at,
        path=f"/ws/outings/{outing.outing_id}",
    )


@router.delete("/outings/{outing_id}", status_code=status.HTTP_204_NO_CONTENT)
async def end_outing(outing_id: uuid.UUID, user: CurrentUserId, service: Outings, live: Live) -> None:
    await service.close_outing(user=user, outing_id=outing_id)
    await live.end_outing(outing_id, reason="host_ended")


@router.get("/outings")
async def my_outings(user: CurrentUserId, service: Outings) -> list[dict[str, Any]]:
    """Open outings the caller hosts, is invited to, or answered."""
    return await service.invitations(user=user)


@router.post("/outings/{outing_id}/{answer}", status_code=status.HTTP_204_NO_CONTENT)
async def answer_outing(
    outing_id: uuid.UUID,
    answer: Literal["accept", "decline", "start", "leave"],
    user: CurrentUserId,
    service: Outings,
    live: Live,
) -> None:
    """An invitee accepts or declines; the host starts; a member leaves (the last one out
    ends the outing for everyone)."""
    if answer == "start":
        await service.start_outing(user=user, outing_id=outing_id)
    elif answer == "leave":
        if await service.leave(user=user, outing_id=outing_id):
            await live.end_outing(outing_id, reason="all_left")
    else:
        await service.answer(user=user, outing_id=outing_id, accept=answer == "accept")


# -- steps --------------------------------------------------------------------------------


@router.put("/steps/{day}")
async def upload_steps(day: date, body: StepsIn, user: CurrentUserId, service: Steps) -> dict[str, Any]:
    today = datetime.now(UTC).date()
    # A day ahead for time zones east of UTC; a month back for a watch that synced late.
    if not today - timedelta(days=31) <= day <= today + timedelta(days=1):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "steps are accepted for the last 31 days only")
    return await service.upload_steps(user=user, day=day, device_id=body.device_id, steps=body.steps)


@router.post("/steps/goals", status_code=status.HTTP_201_CREATED)
async def create_step_goal(body: StepGoalIn, user: CurrentUserId, service: Steps) -> dict[str, Any]:
    """A shared goal among the caller and friends of theirs."""
    return await service.create_goal(
        owner=user, title=body.title, members=body.members, period=body.period, target=body.target
    )


@router.get("/steps/goals")
async def step_goals(user: CurrentUserId, service: Steps, day: date | None = None) -> list[dict[str, Any]]:
    """The caller's goals with this period's progress."""
    return await service.goals(user=user, day=day or datetime.now(UTC).date())


@router.get("/steps/stats")
async def step_statistics(
    user: CurrentUserId,
    service: Steps,
    day: date | None = None,
    streak_min: Annotated[int, Query(ge=1, le=100_000)] = 8000,
) -> dict[str, Any]:
    """The caller's own week, month and streaks."""
    return await service.statistics(user=user, day=day or datetime.now(UTC).date(), streak_min=streak_min)


@router.get("/steps/ranking")
async def step_ranking(
    user: CurrentUserId,
    service: Steps,
    period: Literal["day", "week"] = "day",
    day: date | None = None,
) -> list[dict[str, Any]]:
    return await service.step_ranking(user=user, period=period, day=day or datetime.now(UTC).date())


# -- profile ------------------------------------------------------------------------------


@router.get("/profile")
async def profile(user: CurrentUserId, service: Profiles) -> dict[str, Any]:
    return await service.profile(user=user)


@router.put("/profile")
async def update_profile(body: ProfileIn, user: CurrentUserId, service: Profiles) -> dict[str, Any]:
    """Own profile only: the name on boards and the heart rates zones are computed from."""
    return await service.update_profile(
        user=user,
        display_name=body.display_name,
        max_hr=body.max_hr,
        resting_hr=body.resting_hr,
        nearby_opt_in=body.nearby_opt_in,
        privacy_zones=[zone.model_dump() for zone in body.privacy_zones],
    )


# -- workouts -----------------------------------------------------------------------------


@router.post("/workouts", status_code=status.HTTP_201_CREATED)
async def create_workout(body: WorkoutIn, user: CurrentUserId, service: Workouts) -> dict[str, Any]:
    """Own workouts only; a live run follows one with ``/ws/runs?workout_id=…``."""
    try:
        steps = body.expanded()
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
    workout = await service.create_workout(user=user, title=body.title, steps=steps)
    return {"workout_id": workout.workout_id, "title": workout.title, "steps": workout.steps}


@router.get("/workouts")
async def workouts(user: CurrentUserId, service: Workouts) -> list[dict[str, Any]]:
    return [
        {"workout_id": item.workout_id, "title": item.title, "steps": item.steps}
        for item in await service.workouts(user=user)
    ]


# -- analytics and shoes ------------------------------------------------------------------


@router.get("/analytics")
async def analytics(
    user: CurrentUserId,
    service: Analytics,
    day: date | None = None,
    weeks: Annotated[int, Query(ge=1, le=52)] = 12,
) -> dict[str, Any]:
    """The caller's own training: weekly volume, acute:chronic load, race predictions."""
    return await service.analytics(user=user, day=day or datetime.now(UTC).date(), weeks=weeks)


@router.post("/shoes", status_code=status.HTTP_201_CREATED)
async def add_shoe(body: ShoeIn, user: CurrentUserId, service: Analytics) -> dict[str, Any]:
    return await service.add_shoe(user=user, name=body.name, retire_at_km=body.retire_at_km)


@router.get("/shoes")
async def shoes(user: CurrentUserId, service: Analytics) -> list[dict[str, Any]]:
    return await service.shoes(user=user)


@router.put("/runs/{run_id}/shoe", status_code=status.HTTP_204_NO_CONTENT)
async def wear_shoe(run_id: uuid.UUID, body: RunShoeIn, user: CurrentUserId, service: Analytics) -> None:
    """Own runs and own shoes only."""
    await service.wear(user=user, run_id=run_id, shoe_id=body.shoe_id)


# -- Strava -------------------------------------------------------------------------------


@router.post("/strava/connect")
async def connect_strava(body: StravaConnectIn, user: CurrentUserId, strava: Strava) -> dict[str, Any]:
    """The caller's own connection, from the code Strava's consent page returned."""
    return await strava.connect(user=user, code=body.code)


@router.post("/runs/{run_id}/strava")
async def send_to_strava(run_id: uuid.UUID, user: CurrentUserId, strava: Strava) -> dict[str, Any]:
    """Own runs only; sending again reports the first upload."""
    return await strava.upload_run(user=user, run_id=run_id)


@router.get("/runs/{run_id}/strava")
async def strava_status(run_id: uuid.UUID, user: CurrentUserId, strava: Strava) -> dict[str, Any]:
    return await strava.status(user=user, run_id=run_id)


# -- coach --------------------------------------------------------------------------------


@router.post("/coach")
async def ask_coach(body: CoachIn, user: CurrentUserId, coach: CoachDep) -> dict[str, Any]:
    """The caller's own numbers only; a partner's failure falls back to rules, never a 5xx."""
    return await coach.ask(user=user, question=body.question)
