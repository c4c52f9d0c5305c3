"""Races on the live sockets: each replica's race boards, a racer's progress and finish
(gun time from the race's start, chip time from the racer's own first point), and the
results once the last racer is done or the race is overdue."""

from __future__ import annotations

import uuid

from websockets.asyncio.server import ServerConnection

from running.hub import Hub
from running.live_groups import RaceBoard, dumps
from running.live_run import LiveRun
from running.privacy import hides
from running.races import RaceService
from running.runs import RunService
from running.track import LiveTrack


class LiveRaces:
    def __init__(self, *, hub: Hub, runs: RunService, races: RaceService) -> None:
        self._hub = hub
        self._runs = runs
        self._races = races
        self.boards: dict[uuid.UUID, RaceBoard] = {}

    # -- races ----------------------------------------------------------------------------

    async def join(self, live: LiveRun, connection: ServerConnection) -> RaceBoard | None:
        if live.race is None:
            return None
        board = self.boards.get(live.race.race_id)
        if board is None:
            board = RaceBoard(live.race.race_id, live.race.mode, live.race.target)
            self.boards[live.race.race_id] = board
            await self._hub.subscribe(f"race.{live.race.race_id}", board)
        else:
            await self._hub.ready(f"race.{live.race.race_id}")
        board.connections.add(connection)
        return board

    async def progress(self, live: LiveRun) -> None:
        race = live.race
        assert race is not None
        track = live.track
        if not live.race_finished:
            # Gun time ranks (seconds from the race's start, as on a real course); chip
            # time (from the racer's own first point) is reported beside it.
            crossed = track.reached_at(race.target) if race.mode == "distance" else None
            if crossed is not None:
                await self.over(live, finish_s=crossed - race.start_at, chip_s=_chip(track, crossed))
                return
            if race.mode == "time" and track.position is not None and track.position.t - race.start_at >= race.target:
                ended = race.start_at + race.target
                await self.over(live, finish_s=race.target, chip_s=_chip(track, ended))
                return
        position = track.position
        # Competitors see no position of a racer inside one of the racer's privacy zones.
        place = position if position is not None and not hides(live.zones, position.lat, position.lon) else None
        await self._hub.publish(
            f"race.{race.race_id}",
            dumps(
                {
                    "type": "progress",
                    "user_id": str(live.user_id),
                    "name": live.name,
                    "distance_m": round(track.distance_m, 1),
                    "pace_s_per_km": track.stats()["pace_s_per_km"],
                    "speed_mps": round(position.speed, 2) if position else 0.0,
                    "lat": round(place.lat, 7) if place else None,
                    "lon": round(place.lon, 7) if place else None,
                }
            ),
        )

    async def over(self, live: LiveRun, *, finish_s: float | None, chip_s: float | None = None) -> None:
        race = live.race
        assert race is not None
        live.race_finished = True
        await self._runs.save_points(runs=[live])
        placings = await self._races.record_finish(
            race_id=race.race_id, user=live.user_id, distance_m=live.track.distance_m, finish_s=finish_s, chip_s=chip_s
        )
        topic = f"race.{race.race_id}"
        last = live.track.position
        shown = last is not None and not hides(live.zones, last.lat, last.lon)
        await self._hub.publish(
            topic,
            dumps(
                {
                    "type": "finish",
                    "user_id": str(live.user_id),
                    "name": live.name,
                    "distance_m": round(live.track.distance_m, 1),
                    "lat": round(last.lat, 7) if last is not None and shown else None,
                    "lon": round(last.lon, 7) if last is not None and shown else None,
                    "finish_s": round(finish_s, 1) if finish_s is not None else None,
                    "chip_s": round(chip_s, 1) if chip_s is not None else None,
                }
            ),
        )
        if placings is not None:
            await self._hub.publish(
                topic,
                dumps(
                    {
                        "type": "results",
                        "race_id": str(race.race_id),
                        "placings": placings,
                    }
                ),
            )

    async def close_overdue(self) -> None:
        for race_id in await self._races.overdue_races():
            placings = await self._races.close_race(race_id=race_id)
            if placings is not None:
                await self._hub.publish(
                    f"race.{race_id}",
                    dumps({"type": "results", "race_id": str(race_id),
                            "placings": placings}),
                )  # fmt: skip

    async def leave(self, board: RaceBoard, connection: ServerConnection) -> None:
        board.connections.discard(connection)
        if not board.connections:
            await self._hub.unsubscribe(f"race.{board.race_id}", board)
            self.boards.pop(board.race_id, None)


def _chip(track: LiveTrack, at: float) -> float | None:
    return at - track.first_t if track.first_t is not None else None
