"""Training runs: queued by corrections or by an operator, claimed by one worker at a time
under a lease, reporting progress, cancellable, finished once.

The run's row is the job's truth; the ``TrainingRequested`` message (outbox) only wakes a
worker. A worker claims a queued run, or one whose lease ran out (its worker died), and
renews the lease with every progress report; the result is committed only while the lease
is still the worker's (the fence), so two deliveries of one job never both complete it.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from common.events.envelope import utc_now
from common.events.outbox import UnitOfWork
from contracts import TaskConfirmed, TrainingRequested
from mlops.models import TaskLabel, TrainingRun
from mlops.registry import RegistryError

ACTIVE = ("queued", "running")
FINISHED = ("succeeded", "failed", "cancelled")
TASK_JUDGE = "task_judge"


class LeaseLost(Exception):
    """Another worker holds the run now (ours expired): stop without writing a result."""


class Cancelled(Exception):
    """An operator cancelled the run."""


async def queue_run(
    uow: UnitOfWork,
    *,
    family: str,
    kind: Literal["train", "verify"],
    trigger: str,
    requested_by: str,
    version: str | None = None,
    corrections_mark: int = 0,
) -> TrainingRun:
    run = TrainingRun(
        id=uuid.uuid4(),
        family=family,
        kind=kind,
        status="queued",
        trigger=trigger,
        requested_by=requested_by,
        version=version,
        corrections_mark=corrections_mark,
        step="queued",
        progress=0.0,
        cancel_requested=False,
        attempts=0,
        result={},
        created_at=utc_now(),
    )
    uow.session.add(run)
    uow.emit(
        TrainingRequested(
            run_id=run.id,
            family=family,
            kind=kind,
            version=version,
            requested_at=run.created_at,
        )
    )
    return run


async def corrections_count(session: AsyncSession) -> int:
    return int(await session.scalar(select(func.coalesce(func.max(TaskLabel.correction_seq), 0))) or 0)


async def _last_mark(session: AsyncSession, family: str) -> int:
    mark = await session.scalar(
        select(func.max(TrainingRun.corrections_mark)).where(TrainingRun.family == family, TrainingRun.kind == "train")
    )
    return int(mark or 0)


async def _lock_family(session: AsyncSession, family: str) -> None:
    # The family's state row is the mutex of its trigger: two labels consumed at once
    # cannot both take the same correction number or both queue a run.
    from mlops.registry import lock_family

    await lock_family(session, family=family)


async def record_label(uow: UnitOfWork, *, event: TaskConfirmed, threshold: int) -> TrainingRun | None:
    """Keep the owner's label; at ``threshold`` new corrections since the last training
    run, queue one (unless one is queued or running already)."""
    session = uow.session
    await _lock_family(session, TASK_JUDGE)
    if await session.get(TaskLabel, event.task_id) is not None:
        return None  # the same task confirmed twice: its first label stands
    corrected = event.ai_overridden
    seq = await corrections_count(session) + 1 if corrected else None
    session.add(
        TaskLabel(
            task_id=event.task_id,
            helper_id=event.helper_id,
            branch_id=event.branch_id,
            task_type=event.task_type,
            final_label=event.final_label,
            ai_outcome=event.ai_outcome,
            corrected=corrected,
            decided_at=event.decided_at,
            correction_seq=seq,
        )
    )
    await session.flush()
    if seq is None or seq - await _last_mark(session, TASK_JUDGE) < threshold:
        return None
    if await _active_train(session, TASK_JUDGE) is not None:
        return None
    return await queue_run(
        uow, family=TASK_JUDGE, kind="train", trigger="corrections", requested_by="mlops", corrections_mark=seq
    )


async def _active_train(session: AsyncSession, family: str) -> TrainingRun | None:
    return await session.scalar(
        select(TrainingRun)
        .where(TrainingRun.family == family, TrainingRun.kind == "train", TrainingRun.status.in_(ACTIVE))
        .limit(1)
    )


async def start_training(uow: UnitOfWork, *, family: str, requested_by: str) -> TrainingRun:
    """An operator's request: one training run per family at a time."""
    session = uow.session
    await _lock_family(session, family)
    if family != TASK_JUDGE:
        raise RegistryError(f"{family} is not trained here: register its packs and verify them", status=422)
    active = await _active_train(session, family)
    if active is not None:
        raise RegistryError(f"run {active.id} is {active.status} for {family} already")
    return await queue_run(
        uow,
        family=family,
        kind="train",
        trigger="operator",
        requested_by=requested_by,
        corrections_mark=await corrections_count(session),
    )


async def get_run(session: AsyncSession, *, run_id: uuid.UUID) -> TrainingRun:
    run = await session.get(TrainingRun, run_id)
    if run is None:
        raise RegistryError(f"run {run_id} does not exist", status=404)
    return run


async def list_runs(session: AsyncSession, *, family: str | None = None, limit: int = 50) -> Sequence[TrainingRun]:
    query = select(TrainingRun).order_by(TrainingRun.created_at.desc()).limit(limit)
    if family is not None:
        query = query.where(TrainingRun.family == family)
    return (await session.scalars(query)).all()


async def cancel(session: AsyncSession, *, run_id: uuid.UUID) -> TrainingRun:
    """A queued run is cancelled at once; a running one at its worker's next report."""
    run = await session.get(TrainingRun, run_id, with_for_update=True)
    if run is None:
        raise RegistryError(f"run {run_id} does not exist", status=404)
    if run.status in FINISHED:
        raise RegistryError(f"run {run_id} is {run.status} already")
    run.cancel_requested = True
    if run.status == "queued":
        run.status = "cancelled"
        run.step = "cancelled"
        run.finished_at = utc_now()
    return run


@dataclass(frozen=True)
class Claim:
    outcome: Literal["claimed", "finished", "busy", "unknown"]
    run: TrainingRun | None = None
    retry_after_s: float = 0.0


async def claim(session: AsyncSession, *, run_id: uuid.UUID, worker: str, lease_s: float) -> Claim:
    """Take the run for ``worker``: queued, or running under a lease that ran out."""
    run = await session.get(TrainingRun, run_id, with_for_update=True)
    if run is None:
        return Claim("unknown")
    if run.status in FINISHED:
        return Claim("finished", run)
    now = utc_now()
    if run.status == "running" and run.lease_until is not None and run.lease_until > now and run.lease_owner != worker:
        return Claim("busy", run, retry_after_s=(run.lease_until - now).total_seconds())
    if run.cancel_requested:
        run.status, run.step, run.finished_at = "cancelled", "cancelled", now
        return Claim("finished", run)
    run.status = "running"
    run.lease_owner = worker
    run.lease_until = now + timedelta(seconds=lease_s)
    run.attempts += 1
    run.started_at = run.started_at or now
    run.step = "started"
    return Claim("claimed", run)


async def report_progress(
    session: AsyncSession, *, run_id: uuid.UUID, worker: str, lease_s: float, step: str, progress: float
) -> None:
    """Record the step, renew the lease; raises LeaseLost or Cancelled."""
    now = utc_now()
    result = await session.execute(
        update(TrainingRun)
        .where(TrainingRun.id == run_id, TrainingRun.status == "running", TrainingRun.lease_owner == worker)
        .values(step=step[:40], progress=max(0.0, min(1.0, progress)), lease_until=now + timedelta(seconds=lease_s))
        .returning(TrainingRun.cancel_requested)
    )
    row = result.first()
    if row is None:
        raise LeaseLost(str(run_id))
    if row[0]:
        raise Cancelled(str(run_id))


async def finish(
    session: AsyncSession,
    *,
    run_id: uuid.UUID,
    worker: str,
    status: Literal["succeeded", "failed", "cancelled"],
    result: dict[str, Any] | None = None,
    error: str | None = None,
    version: str | None = None,
) -> TrainingRun:
    """Close the run, fenced by the lease: raises LeaseLost if another worker took it."""
    run = await session.get(TrainingRun, run_id, with_for_update=True)
    if run is None or run.status != "running" or run.lease_owner != worker:
        raise LeaseLost(str(run_id))
    now = utc_now()
    run.status = status
    run.step = status
    run.progress = 1.0 if status == "succeeded" else run.progress
    run.result = result or {}
    run.error = error[:4000] if error else None
    run.version = version or run.version
    run.lease_until = None
    run.finished_at = now
    return run


async def allocate_version(session: AsyncSession, *, run_id: uuid.UUID, worker: str, family: str) -> str:
    """A fresh version number for this attempt of a training run (fenced by the lease).

    Each attempt takes its own number: files an abandoned attempt may still be uploading
    land under a version that is never registered, never under the one that is."""
    from mlops.models import ModelVersion

    taken = list((await session.scalars(select(ModelVersion.version).where(ModelVersion.family == family))).all())
    taken += [
        version
        for version in (
            await session.scalars(
                select(TrainingRun.version).where(
                    TrainingRun.family == family, TrainingRun.kind == "train", TrainingRun.version.is_not(None)
                )
            )
        ).all()
        if version is not None
    ]
    highest = 0
    for version in taken:
        parts = version.split(".")
        if len(parts) == 3 and parts[0] == "1" and parts[1].isdigit():
            highest = max(highest, int(parts[1]))
    chosen = f"1.{highest + 1}.0"
    result = await session.execute(
        update(TrainingRun)
        .where(TrainingRun.id == run_id, TrainingRun.status == "running", TrainingRun.lease_owner == worker)
        .values(version=chosen)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise LeaseLost(str(run_id))
    return chosen
