"""The live WebSocket endpoints, served by the ``websockets`` library on their own port.

    /ws/runs[?run_id=…][&race_id=…]   a runner streams points, gets live stats back
    /ws/runs/{run_id}/watch           a friend watches a run
    /ws/share/{token}                 anyone with an unexpired link watches a run
    /ws/outings/{outing_id}           a walk/run together: share positions with the group

The bearer token (``Authorization`` header, or ``access_token`` in the query for browsers)
is verified during the handshake: a bad one gets HTTP 401 and never a socket. Frames are
JSON. Bad frames get an ``error`` message with the reason; too many of them, or frames
faster than the rate limit, close the socket with code 1008 and the reason.

Runner frames: ``{"type": "point", …GpsPoint}``, ``{"type": "points", "points": […]}``
(a burst after a tunnel), ``{"type": "pause"|"resume"|"lap"[, "t": device time]}``,
``{"type": "nearby", "radius_m": 1000}`` (opted-in runners only) and ``{"type": "finish"}``.
A point's device time ``t`` is its identity: a resent point is refused as a duplicate and
stored once. Every flush answers ``{"type": "ack", "t": …}``: every point up to that device
time is stored (or refused for good), so the phone may forget it; ``started`` carries the
same as ``stored_t`` after a reconnect (ADR 0048).
``?workout_id=…`` follows a structured workout and sends ``cue`` messages.

Watchers get ``position`` messages; inside one of the runner's privacy zones they carry
``"hidden": true`` and no coordinates (running.privacy).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlparse

import websockets
from pydantic import ValidationError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from common.security import InvalidToken, Principal, TokenVerifier
from running.errors import Conflict, Forbidden, NotFound
from running.hub import Hub
from running.live_groups import (
    BadFrame,
    ConnectionGroup,
    OutingGroup,
    RaceBoard,
    TokenBucket,
    broadcast_text,
    dumps,
    parse_frame,
    validation_reason,
)
from running.live_keepalive import Keepalive, Liveness
from running.live_nearby import LiveNearby
from running.live_points import ActiveRuns, LivePoints, control
from running.live_races import LiveRaces
from running.live_run import LiveRun
from running.outings import OutingService
from running.privacy import hides
from running.races import RaceService
from running.runs import RunService
from running.settings import RunningSettings
from running.track import GpsPoint

log = logging.getLogger(__name__)

POLICY = 1008
TRY_AGAIN_LATER = 1013
MAX_FRAME_BYTES = 256 * 1024
# A client flooding us has frames queued ahead of its close reply; do not wait the
# library's default 10 s for it before dropping the connection.
CLOSE_TIMEOUT_S = 2.0
# Runs stored per transaction in a flush. Encoding a run's points runs in the event loop:
# two thousand runs in one go held every socket for ~40 ms (up to 70) every flush, which
# was the replica's delivery p99; in slices it held it 7.4 ms at p50, 33 ms at most
# (bench/running_flush.py, ADR 0048).
FLUSH_SLICE_RUNS = 200


class Closed(Exception):
    """End the session: close with ``code`` and ``reason``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason


@dataclass
class Session:
    connection: ServerConnection
    principal: Principal | None
    query: dict[str, str]
    liveness: Liveness


class LiveServer:
    def __init__(
        self,
        *,
        runs: RunService,
        races: RaceService,
        outings: OutingService,
        hub: Hub,
        verifier: TokenVerifier,
        settings: RunningSettings,
    ) -> None:
        self._runs = runs
        self._races = races
        self._outings = outings
        self._hub = hub
        self._verifier = verifier
        self._settings = settings
        self._server: Server | None = None
        self._principals: dict[uuid.UUID, Principal] = {}
        self._groups: dict[str, ConnectionGroup] = {}
        self.races = LiveRaces(hub=hub, runs=runs, races=races)
        self.active = ActiveRuns()
        self._runner_sockets: dict[uuid.UUID, ServerConnection] = {}
        self.nearby = LiveNearby(hub=hub)
        self.points = LivePoints(hub=hub, races=self.races, nearby=self.nearby)
        self.keepalive = Keepalive(
            interval_s=settings.running_live_ping_interval_s,
            timeout_s=settings.running_live_ping_timeout_s,
            close_timeout_s=CLOSE_TIMEOUT_S,
        )

    async def start(self, host: str, port: int) -> int:
        await self.nearby.start()
        self._server = await serve(
            self._handle,
            host,
            port,
            process_request=self._authenticate,
            max_size=MAX_FRAME_BYTES,
            # Only quiet sockets are pinged (running.live_keepalive), not all of them.
            ping_interval=None,
            close_timeout=CLOSE_TIMEOUT_S,
            compression=None,  # positions are small; deflate costs more CPU than it saves
        )
        await self.keepalive.start()
        bound: int = next(iter(self._server.sockets)).getsockname()[1]
        return bound

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close(close_connections=True)
            await self._server.wait_closed()
        await self.keepalive.stop()

    # -- handshake ------------------------------------------------------------------------

    async def _authenticate(self, connection: ServerConnection, request: Request) -> Response | None:
        path = urlparse(request.path).path
        if path.startswith("/ws/share/"):
            return None  # the link is the credential
        token = request.headers.get("authorization", "").partition(" ")[2]
        if not token:
            token = parse_qs(urlparse(request.path).query).get("access_token", [""])[0]
        if not token:
            return _refuse(HTTPStatus.UNAUTHORIZED, "bearer token required")
        try:
            principal = await self._verifier.verify(token)
        except InvalidToken as exc:
            return _refuse(HTTPStatus.UNAUTHORIZED, exc.reason)
        if principal.user_id is None:
            return _refuse(HTTPStatus.FORBIDDEN, "only members run")
        self._principals[connection.id] = principal
        return None

    # -- routing --------------------------------------------------------------------------

    async def _handle(self, connection: ServerConnection) -> None:
        principal = self._principals.pop(connection.id, None)
        url = urlparse(connection.request.path if connection.request else "/")
        query = {key: values[0] for key, values in parse_qs(url.query).items()}
        session = Session(connection, principal, query, self.keepalive.watch(connection))
        parts = [part for part in url.path.split("/") if part]
        try:
            match parts:
                case ["ws", "runs"]:
                    await self._runner(session)
                case ["ws", "runs", run_id, "watch"]:
                    await self._watch(session, _uuid(run_id))
                case ["ws", "share", token]:
                    await self._watch_shared(session, token)
                case ["ws", "outings", outing_id]:
                    await self._outing(session, _uuid(outing_id))
                case _:
                    raise Closed(POLICY, "no such endpoint")
        except Closed as exc:
            await connection.close(exc.code, exc.reason)
        except (NotFound, Forbidden, Conflict) as exc:
            await connection.close(POLICY, str(exc)[:120])
        except PoolTimeout:
            # Every database connection is busy (a crowd of starts at a race's gun): say
            # "try again" (1013) instead of an internal error, so the app reconnects.
            log.warning("database pool exhausted; asked a client to reconnect")
            await connection.close(TRY_AGAIN_LATER, "server busy; reconnect in a few seconds")
        except websockets.ConnectionClosed:
            pass
        finally:
            self.keepalive.forget(connection)

    def _user(self, session: Session) -> uuid.UUID:
        user_id = session.principal.user_id if session.principal else None
        if user_id is None:
            raise Closed(POLICY, "sign in first")
        return user_id

    # -- runners --------------------------------------------------------------------------

    async def _runner(self, session: Session) -> None:
        user = self._user(session)
        connection = session.connection
        live = await self._open_run(user, session.query)
        self.active.add(live)
        self._runner_sockets[live.run_id] = connection
        board = await self.races.join(live, connection)
        await connection.send(
            dumps(
                {
                    "type": "started",
                    "run_id": str(live.run_id),
                    "race": {"race_id": str(live.race.race_id), "mode": live.race.mode, "target": live.race.target,
                             "start_at": live.race.start_at} if live.race else None,
                    "stats": live.track.stats(),
                    # Points up to this device time are stored: the phone resends only later ones.
                    "stored_t": live.stored_t or None,
                }
            )
        )  # fmt: skip
        try:
            await self._take_frames(live, connection, session.liveness)
        finally:
            await self._let_go(live, connection, board)

    async def _open_run(self, user: uuid.UUID, query: dict[str, str]) -> LiveRun:
        """The run a reconnect resumes (``run_id``), or a new one."""
        run_id, race_id = query.get("run_id"), query.get("race_id")
        workout_id = query.get("workout_id")
        if run_id:
            resumed = _uuid(run_id)
            previous = self._runner_sockets.get(resumed)
            held = self.active.get(resumed)
            if held is not None and held.user_id == user:
                # The old socket of a reconnect is half-dead, and what it took in since the
                # last flush is only in memory: stored first, so the resumed track (and the
                # phone's acknowledgement) includes it and the phone need not resend it.
                held.touched = float("-inf")
                await self._runs.save_points(runs=[held])
                if held.pending or held.writes_under_way:
                    # A flush of the old socket's points is still writing, or failed and put
                    # them back: the database's newest point is newer than what is durable.
                    # Resumed now, the phone would be told older points are stored (or
                    # resend them into a track that refuses them as too late). Until they
                    # settle, the phone tries again, as it does when the pool is busy.
                    raise Closed(TRY_AGAIN_LATER, "points of the old connection are still being stored; reconnect")
            live = await self._runs.resume_run(user=user, run_id=resumed)
            if previous is not None:
                self.active.pop(live.run_id)
                await previous.close(1000, "resumed on another connection")
            return live
        # One live run per member: what this replica holds of an older one is saved
        # first, then the start ends it (running.runs.RunService.start_run).
        await self._runs.save_points(runs=self.active.of_member(user))
        live, ended = await self._runs.start_run(
            user=user,
            race_id=_uuid(race_id) if race_id else None,
            workout_id=_uuid(workout_id) if workout_id else None,
        )
        for old in ended:
            await self._ended(old, "a new run was started")
        return live

    async def _take_frames(self, live: LiveRun, connection: ServerConnection, liveness: Liveness) -> None:
        """Until the runner finishes or goes: frames in; answers, cues, refusals and stats out."""
        bucket = TokenBucket(self._settings.running_frames_per_s, self._settings.running_frame_burst)
        bad_frames = 0
        last_stats = 0.0
        async for frame in connection:
            now = liveness.heard_at = time.monotonic()  # a streaming runner is not pinged
            if not bucket.take():
                raise Closed(POLICY, "rate limit exceeded")
            try:
                message = parse_frame(frame)
                if message.get("type") == "finish":
                    await self._finish(live, connection)
                    return
                raw = await self._points_of(live, connection, message)
            except BadFrame as exc:
                bad_frames += 1
                if bad_frames > self._settings.running_max_bad_frames:
                    raise Closed(POLICY, "too many bad frames") from exc
                await connection.send(dumps({"type": "error", "reason": exc.reason}))
                continue
            if raw is None:
                continue
            invalid, refused = await self.points.ingest(live, raw)
            for cue in live.cues:
                await connection.send(dumps(cue))
            live.cues.clear()
            if invalid or refused:
                bad_frames += 1 if invalid and len(invalid) == len(raw) else 0
                await connection.send(dumps({"type": "refused", "invalid": invalid[:10], "reasons": refused}))
            if now - last_stats >= self._settings.running_stats_interval_s:
                last_stats = now
                # Without the awaited send's locking and draining: a small frame a
                # second. A runner that stops reading lets them queue here, and is pinged
                # and dropped once they have stayed queued for a ping interval.
                broadcast_text((connection,), f'{{"type":"stats",{live.track.stats_json()}}}')

    async def _points_of(
        self, live: LiveRun, connection: ServerConnection, message: dict[str, Any]
    ) -> list[Any] | None:
        """The points a frame carries; a question about runners nearby or a button is
        answered at once instead (None)."""
        kind = message.get("type")
        if kind == "nearby":
            await connection.send(dumps(self.nearby.answer(live, message)))
            return None
        if kind in ("pause", "resume", "lap"):
            await connection.send(dumps(control(live, kind, message)))
            return None
        if kind == "point":
            return [message]
        if kind == "points" and isinstance(message.get("points"), list):
            raw: list[Any] = message["points"]
            if len(raw) > self._settings.running_max_batch:
                raise BadFrame(f"at most {self._settings.running_max_batch} points per frame")
            return raw
        raise BadFrame("expected type point, points, pause, resume, lap, nearby or finish")

    async def _let_go(self, live: LiveRun, connection: ServerConnection, board: RaceBoard | None) -> None:
        """The runner's socket is gone: off the nearby map and the race board, and what
        it sent is stored."""
        if live.nearby is not None and live.nearby_sent:
            with contextlib.suppress(Exception):
                await self.nearby.gone(live)
        if self._runner_sockets.get(live.run_id) is connection:
            self.active.pop(live.run_id)
            self._runner_sockets.pop(live.run_id, None)
        if board is not None:
            await self.races.leave(board, connection)
        with contextlib.suppress(Exception):
            await self._runs.save_points(runs=[live])

    async def _finish(self, live: LiveRun, connection: ServerConnection) -> None:
        if live.race is not None and not live.race_finished:
            await self.races.over(live, finish_s=None)
        run = await self._runs.finish_run(live=live)
        await self._hub.publish(f"run.{live.run_id}", dumps({"type": "finished", "run_id": str(live.run_id)}))
        await connection.send(dumps({"type": "finished", "run_id": str(run.run_id), "summary": run.summary}))
        await connection.close(1000, "run finished")

    # -- watchers -------------------------------------------------------------------------

    async def _watch(self, session: Session, run_id: uuid.UUID) -> None:
        run = await self._runs.watchable_run(viewer=self._user(session), run_id=run_id)
        await self._follow(session, f"run.{run_id}", {"run_id": str(run_id), "user_id": str(run.user_id),
                                                    "status": run.status})  # fmt: skip

    async def _watch_shared(self, session: Session, token: str) -> None:
        run = await self._runs.shared_run(token=token)
        await self._follow(session, f"run.{run.run_id}", {"run_id": str(run.run_id), "status": run.status})

    async def _follow(self, session: Session, topic: str, hello: dict[str, Any]) -> None:
        connection = session.connection
        group = self._groups.get(topic)
        if group is None:
            group = self._groups[topic] = ConnectionGroup()
        if len(group.connections) >= self._settings.running_watchers_per_run:
            raise Closed(1013, "too many watchers; try again later")
        group.connections.add(connection)
        session.liveness.outbound = group  # a watcher of a moving run is not pinged
        try:
            # "watching" only once the replica holding the run will send here.
            if len(group.connections) == 1:
                await self._hub.subscribe(topic, group)
            else:
                await self._hub.ready(topic)
            await connection.send(dumps({"type": "watching", **hello}))
            bucket = TokenBucket(1.0, 10)
            async for _ in connection:  # watchers only listen; chatter is capped
                session.liveness.heard_at = time.monotonic()
                if not bucket.take():
                    raise Closed(POLICY, "rate limit exceeded")
        finally:
            group.connections.discard(connection)
            if not group.connections:
                self._groups.pop(topic, None)
                await self._hub.unsubscribe(topic, group)

    # -- outings --------------------------------------------------------------------------

    async def _outing(self, session: Session, outing_id: uuid.UUID) -> None:
        user = self._user(session)
        outing = await self._outings.outing_for(user=user, outing_id=outing_id)
        zones = await self._runs.privacy_zones(user=user)
        topic = f"outing.{outing_id}"
        connection = session.connection
        group = self._groups.get(topic)
        if group is None:
            group = self._groups[topic] = OutingGroup(self._settings.running_outing_snapshot_s)
        group.connections.add(connection)
        session.liveness.outbound = group
        bucket = TokenBucket(self._settings.running_frames_per_s, self._settings.running_frame_burst)
        ends_at = outing.ends_at.timestamp()
        try:
            if len(group.connections) == 1:
                await self._hub.subscribe(topic, group)
            else:
                await self._hub.ready(topic)
            await connection.send(dumps({"type": "joined", "outing_id": str(outing_id), "members": outing.members,
                                          "ends_at": ends_at}))  # fmt: skip
            async for frame in connection:
                session.liveness.heard_at = time.monotonic()
                if not bucket.take():
                    raise Closed(POLICY, "rate limit exceeded")
                if time.time() >= ends_at:
                    raise Closed(1000, "outing ended")
                try:
                    message = parse_frame(frame)
                    if message.get("type") == "leave":
                        last = await self._outings.leave(user=user, outing_id=outing_id)
                        # The others see who left (and lose their marker) before any end.
                        await self._hub.publish(topic, dumps({"type": "left", "user_id": str(user), "at": time.time()}))
                        if last:  # everyone has left: the outing ends for all
                            await self._publish_closed(outing_id, "all_left")
                        raise Closed(1000, "you left the outing")
                    point = GpsPoint.model_validate(message)
                    if hides(zones, point.lat, point.lon):
                        continue  # the group does not see a member inside their privacy zone
                except BadFrame as exc:
                    await connection.send(dumps({"type": "error", "reason": exc.reason}))
                    continue
                except ValidationError as exc:
                    await connection.send(dumps({"type": "error", "reason": validation_reason(exc)}))
                    continue
                await self._hub.publish(
                    topic,
                    dumps({"type": "position", "user_id": str(user), "t": point.t, "lat": point.lat,
                            "lon": point.lon, "at": time.time()}),
                )  # fmt: skip
        finally:
            group.connections.discard(connection)
            if not group.connections:
                self._groups.pop(topic, None)
                await self._hub.unsubscribe(topic, group)

    async def end_outings(self) -> None:
        for outing_id in await self._outings.ended_outings():
            await self.end_outing(outing_id)

    async def end_outing(self, outing_id: uuid.UUID, *, reason: str = "time_up") -> None:
        await self._outings.close_outing(user=None, outing_id=outing_id)
        await self._publish_closed(outing_id, reason)

    async def _publish_closed(self, outing_id: uuid.UUID, reason: str) -> None:
        await self._hub.publish(
            f"outing.{outing_id}", dumps({"type": "closed", "outing_id": str(outing_id), "reason": reason})
        )

    async def flush(self, *, slice_runs: int = FLUSH_SLICE_RUNS) -> None:
        """Every live run's new points stored, ``slice_runs`` runs per transaction, and
        each runner told what is now durable."""
        active = list(self.active.values())
        for start in range(0, len(active), slice_runs):
            part = active[start : start + slice_runs]
            await self._runs.save_points(runs=part)
            self._acknowledge(part)
            # The next slice's encoding waits behind the sockets' turn, not the other way.
            await asyncio.sleep(0)
        # Runs ended elsewhere (a new start on another replica, the janitor) lose their socket.
        for run_id in await self._runs.not_live(run_ids=list(self.active)):
            connection = self._runner_sockets.pop(run_id, None)
            self.active.pop(run_id)
            if connection is not None:
                await connection.close(1000, "run ended")

    def _acknowledge(self, runs: list[LiveRun]) -> None:
        """The phone drops what is durable from its own store."""
        for live in runs:
            connection = self._runner_sockets.get(live.run_id)
            if connection is not None and live.stored_t > live.acked_t:
                live.acked_t = live.stored_t
                # No waiting on a slow phone's buffer: an ack lost with its socket is
                # repeated by the next ``started`` (stored_t).
                broadcast_text((connection,), f'{{"type":"ack","t":{live.stored_t!r}}}')

    async def end_abandoned_runs(self) -> None:
        for run_id in await self._runs.abandoned_runs(keep=set(self.active)):
            await self._runs.finish_stored(run_id=run_id)
            await self._ended(run_id, "run abandoned")

    async def _ended(self, run_id: uuid.UUID, reason: str) -> None:
        """A run was finished without its runner's finish: tell its watchers, drop its socket."""
        await self._hub.publish(f"run.{run_id}", dumps({"type": "finished", "run_id": str(run_id), "reason": reason}))
        self.active.pop(run_id)
        connection = self._runner_sockets.pop(run_id, None)
        if connection is not None:
            await connection.close(1000, reason)


def _uuid(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError as exc:
        raise Closed(POLICY, "malformed id") from exc


def _refuse(status: HTTPStatus, reason: str) -> Response:
    body = f"{reason}\n".encode()
    headers = Headers([("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))])
    if status is HTTPStatus.UNAUTHORIZED:
        headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
    return Response(status.value, status.phrase, headers, body)
