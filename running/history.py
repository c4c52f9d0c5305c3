"""A member's history: past runs, personal records, and runs imported from files (one at
a time, or a whole archive of them)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from common.events.envelope import utc_now
from common.kernel import ServiceKernel
from contracts import RunFinished
from running import analysis, archives, imports
from running.models import Run, RunChunk
from running.profiles import heart_rates
from running.runs import point_row
from running.track import GpsPoint, LiveTrack

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

    async def import_run(
        self, *, user: uuid.UUID, title: str, points: Sequence[GpsPoint], source: str = "gpx"
    ) -> tuple[Run, bool]:
        """The imported run and whether it is new. Importing is idempotent: a run is known
        by its first and last second, so the same file twice (or the same run exported as
        GPX, TCX and FIT) is one run, and records and events count it once."""
        fingerprint = f"{round(points[0].t)}-{round(points[-1].t)}"
        known = await self._imported(user, fingerprint)
        if known is not None:
            return known, False
        async with self._kernel.db.sessions() as session:
            heart = await heart_rates(session, user=user)
        # A marathon is ~15,000 points: filter and summarise off the event loop.
        track = await asyncio.to_thread(analysis.replay, points)
        summary = await asyncio.to_thread(analysis.summarise_track, track, heart=heart)
        now = utc_now()
        started = datetime.fromtimestamp(points[0].t, UTC)
        finished = datetime.fromtimestamp(points[-1].t, UTC)
        run_id = uuid.uuid4()
        try:
            return await self._store_import(
                user, title, points, source, fingerprint, track, summary, now, started, finished, run_id
            ), True
        except IntegrityError:  # the same file raced in twice: the other upload stored it
            known = await self._imported(user, fingerprint)
            if known is None:
                raise
            return known, False

    async def import_archive(self, *, user: uuid.UUID, document: bytes) -> dict[str, Any]:
        """Every run file of a zip, each as if uploaded alone: idempotent per run (the same
        archive twice imports nothing the second time), and answered file by file."""
        if not archives.is_zip(document):
            raise archives.ArchiveRefused("not a zip archive")
        results: list[dict[str, Any]] = []
        counts = {"imported": 0, "known": 0, "refused": 0, "skipped": 0}
        # Reading the zip is CPU work: one member at a time off the event loop, so only
        # one inflated file is held at once.
        found = archives.members(document)
        stopped = None
        while True:
            try:
                member = await asyncio.to_thread(next, found, None)
            except archives.ArchiveRefused as exc:
                if not results:
                    raise
                stopped = str(exc)  # what came before is imported and reported
                break
            if member is None:
                break
            result: dict[str, Any] = {"name": member.name[:200]}
            if member.data is None:
                result.update(status="skipped" if member.skipped else "refused", reason=member.reason)
            else:
                try:
                    parsed = await asyncio.to_thread(imports.parse, member.data)
                except imports.ImportRefused as exc:
                    result.update(status="refused", reason=str(exc)[:300])
                else:
                    title = parsed.name or member.name.rsplit("/", 1)[-1]
                    run, created = await self.import_run(
                        user=user, title=title[:120], points=parsed.points, source=parsed.source
                    )
                    result.update(
                        status="imported" if created else "known",
                        run_id=str(run.run_id),
                        started_at=run.started_at.isoformat(),
                        distance_m=round(run.distance_m, 1),
                    )
            counts[result["status"]] += 1
            results.append(result)
        return {**counts, "stopped": stopped, "files": results}

    async def _imported(self, user: uuid.UUID, fingerprint: str) -> Run | None:
        async with self._kernel.db.sessions() as session:
            found: Run | None = await session.scalar(
                select(Run).where(Run.user_id == user, Run.fingerprint == fingerprint)
            )
            return found

    async def _store_import(
        self,
        user: uuid.UUID,
        title: str,
        points: Sequence[GpsPoint],
        source: str,
        fingerprint: str,
        track: LiveTrack,
        summary: dict[str, Any],
        now: datetime,
        started: datetime,
        finished: datetime,
        run_id: uuid.UUID,
    ) -> Run:
        async with self._kernel.unit_of_work() as uow:
            run = Run(
                run_id=run_id,
                user_id=user,
                status="finished",
                source=source,
                title=title,
                fingerprint=fingerprint,
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
                    source="gpx",  # the published event knows one kind of file import
                )
            )
        return run
