"""Structured workouts: planned steps (warm-up, intervals, recoveries, cool-down) with a
distance or a duration and an optional pace range. During a live run the server follows
the current step from the runner's own track and sends cues; the run keeps each step's
target beside what was actually done."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from common.events.envelope import utc_now
from common.kernel import ServiceKernel
from running.errors import NotFound
from running.models import Workout
from running.track import LiveTrack

PACE_CUE_EVERY_S = 20.0  # at most one "faster"/"slower" cue this often
PACE_SLACK = 0.05  # within 5 % of the range is on pace (GPS pace is noisy)


def _pace_text(seconds: float) -> str:
    return f"{int(seconds // 60)}:{int(seconds % 60):02d}"


def describe(step: dict[str, Any]) -> str:
    amount = f"{step['distance_m']:.0f} m" if step.get("distance_m") else f"{step['duration_s']:.0f} s"
    pace = ""
    if step.get("pace_min_s_per_km") and step.get("pace_max_s_per_km"):
        pace = f" at {_pace_text(step['pace_min_s_per_km'])}-{_pace_text(step['pace_max_s_per_km'])}/km"
    return f"{step['kind']} {amount}{pace}"


class WorkoutTracker:
    """Follows one workout along a live track (pure; its state is JSON for the run row)."""

    def __init__(self, state: dict[str, Any]) -> None:
        self.state = state

    @classmethod
    def begin(cls, *, workout_id: uuid.UUID, title: str, steps: list[dict[str, Any]]) -> WorkoutTracker:
        return cls({
            "workout_id": str(workout_id),
            "title": title,
            "steps": [{**step, "actual": None} for step in steps],
            "current": -1,  # not begun: the first point starts step one
            "step_start": None,
            "last_pace_cue": 0.0,
        })  # fmt: skip

    @property
    def done(self) -> bool:
        return bool(self.state["current"] >= len(self.state["steps"]))

    def update(self, track: LiveTrack) -> list[dict[str, Any]]:
        """Cues for the runner after new points (step changes, pace advice)."""
        position = track.position
        if position is None or self.done:
            return []
        now = {"t": position.t, "distance_m": track.distance_m, "moving_s": track.moving_s}
        cues: list[dict[str, Any]] = []
        if self.state["current"] < 0:
            cues.append(self._advance(now))
        while not self.done:
            step = self.state["steps"][self.state["current"]]
            start = self.state["step_start"]
            covered = now["distance_m"] - start["distance_m"]
            lasted = now["t"] - start["t"]
            if (step.get("distance_m") and covered >= step["distance_m"]) or (
                step.get("duration_s") and lasted >= step["duration_s"]
            ):
                cues.append(self._advance(now))
                continue
            cue = self._pace_cue(step, track, now["t"])
            if cue is not None:
                cues.append(cue)
            break
        return cues

    def _advance(self, now: dict[str, float]) -> dict[str, Any]:
        index = self.state["current"]
        if index >= 0:
            start = self.state["step_start"]
            distance = round(now["distance_m"] - start["distance_m"], 1)
            moving = round(now["moving_s"] - start["moving_s"], 1)
            self.state["steps"][index]["actual"] = {
                "distance_m": distance,
                "elapsed_s": round(now["t"] - start["t"], 1),
                "moving_s": moving,
                "pace_s_per_km": round(moving / (distance / 1000), 1) if distance >= 20 else None,
            }
        index += 1
        self.state["current"], self.state["step_start"] = index, dict(now)
        steps = self.state["steps"]
        if index >= len(steps):
            return {"type": "cue", "kind": "done", "say": "workout complete"}
        step = steps[index]
        return {
            "type": "cue",
            "kind": "step",
            "step": index + 1,
            "of": len(steps),
            "target": {key: value for key, value in step.items() if key != "actual"},
            "say": f"step {index + 1} of {len(steps)}: {describe(step)}",
        }

    def _pace_cue(self, step: dict[str, Any], track: LiveTrack, t: float) -> dict[str, Any] | None:
        low, high = step.get("pace_min_s_per_km"), step.get("pace_max_s_per_km")
        pace = track.stats()["pace_s_per_km"]
        if low is None or high is None or not isinstance(pace, float):
            return None
        if t - self.state["last_pace_cue"] < PACE_CUE_EVERY_S or t - self.state["step_start"]["t"] < 10:
            return None  # give the runner a few seconds to find the pace
        if pace > high * (1 + PACE_SLACK):
            advice = "faster"
        elif pace < low * (1 - PACE_SLACK):
            advice = "slower"
        else:
            return None
        self.state["last_pace_cue"] = t
        return {"type": "cue", "kind": "pace", "advice": advice, "pace_s_per_km": pace, "say": f"{advice}, please"}

    def report(self) -> dict[str, Any]:
        """Each step's target beside what was done (for the run's history)."""
        return {
            "workout_id": self.state["workout_id"],
            "title": self.state["title"],
            "completed_steps": sum(1 for step in self.state["steps"] if step["actual"] is not None),
            "steps": self.state["steps"],
        }


class WorkoutService:
    def __init__(self, *, kernel: ServiceKernel) -> None:
        self._kernel = kernel

    async def create_workout(self, *, user: uuid.UUID, title: str, steps: list[dict[str, Any]]) -> Workout:
        workout = Workout(workout_id=uuid.uuid4(), user_id=user, title=title, steps=steps, created_at=utc_now())
        async with self._kernel.db.sessions() as session, session.begin():
            session.add(workout)
        return workout

    async def workouts(self, *, user: uuid.UUID) -> list[Workout]:
        async with self._kernel.db.sessions() as session:
            return list(
                await session.scalars(select(Workout).where(Workout.user_id == user).order_by(Workout.created_at))
            )


async def own_workout(session: AsyncSession, *, user: uuid.UUID, workout_id: uuid.UUID) -> Workout:
    workout: Workout | None = await session.get(Workout, workout_id)
    if workout is None or workout.user_id != user:
        raise NotFound("no such workout of yours")
    return workout
