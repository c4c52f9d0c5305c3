"""A member's history: past runs, personal records, and runs imported from files."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from common.events.envelope import utc_now
from common.kernel import ServiceKernel
from contracts import RunFinished
from running import analysis
from running.models import Run, RunChunk
from running.runs import point_row
from running.track import GpsPoint

CHUNK_POINTS = 600


class HistoryService:
    def __init__(self, *, kernel: ServiceKernel) -> None:
        self._kernel = kernel

    async def runs_of(self, *, user: uuid.UUID, limit: int, before: datetime | None) -> Sequence[Run]:
        query = select(Run).where(Run.user_id == user)
        if before is not None:
            query = query.where(Run.started_at < before)
        async with self._kernel.db.sessions() as session:
            return (await session.scalars(query.order_by(Run.started_at.desc()).limit(limit))).all()

    async def records(self, *, user: uuid.UUID) -> dict[str, Any]:
        async with self._kernel.db.sessions() as session:
            runs = (await session.scalars(select(Run).where(Run.user_id == user, Run.status == "finished"))).all()
        best: dict[str, dict[str, Any]] = {}
        for run in runs:
            for distance, seconds in (run.summary.get("best_efforts_s") or {}).items():
                if distance not in best or seconds < best[distance]["moving_s"]:
                    best[distance] = {"moving_s": seconds, "run_id": str(run.run_id)}
        longest = max(runs, key=lambda run: run.distance_m, default=None)
        return {
            "best_efforts": best,
            "longest": {"distance_m": longest.distance_m, "run_id": str(longest.run_id)} if longest else None,
            "runs": len(runs),
            "total_distance_m": round(sum(run.distance_m for run in runs), 1),
        }

    async def import_run(self, *, user: uuid.UUID, title: str, points: Sequence[GpsPoint]) -> Run:
        track = analysis.replay(points)
        summary = analysis.summarise_track(track)
        now = utc_now()
        started = datetime.fromtimestamp(points[0].t, UTC)
        finished = datetime.fromtimestamp(points[-1].t, UTC)
        run_id = uuid.uuid4()
        async with self._kernel.unit_of_work() as uow:
            run = Run(
                run_id=run_id,
                user_id=user,
                status="finished",
                source="gpx",
                title=title,
                started_at=started,
                finished_at=finished,
                distance_m=float(summary["distance_m"]),
                moving_s=float(summary["moving_s"]),
                elapsed_s=float(summary["elapsed_s"]),
                summary=summary,
                track=analysis.filtered_positions(track),
                updated_at=now,
            )
            uow.session.add(run)
            for start in range(0, len(points), CHUNK_POINTS):
                chunk = points[start : start + CHUNK_POINTS]
                uow.session.add(
                    RunChunk(run_id=run_id, first_t=chunk[0].t, points=[point_row(p) for p in chunk], created_at=now)
                )
            uow.emit(
                RunFinished(
                    run_id=run_id,
                    user_id=user,
                    started_at=started,
                    finished_at=finished,
                    distance_m=run.distance_m,
                    moving_s=run.moving_s,
                    source="gpx",
                )
            )
        return run
