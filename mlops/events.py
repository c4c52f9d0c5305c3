"""Every event mlops consumes, and who handles it."""

from __future__ import annotations

import asyncio
import logging
import uuid

from sqlalchemy import select

from common.db import Database
from common.events.bus import Subscriptions
from common.events.outbox import UnitOfWork
from contracts import ModelSignalReported, ModelSwapReported, TaskConfirmed, TrainingRequested
from mlops import deploys, jobs, runs
from mlops.deploys import CanaryBounds
from mlops.models import TrainingRun
from mlops.settings import MlopsSettings

log = logging.getLogger(__name__)


class Consumers:
    def __init__(self, settings: MlopsSettings) -> None:
        self._settings = settings
        self._bounds = CanaryBounds(settings.mlops_canary_min_samples, settings.mlops_canary_max_worsening)

    async def task_confirmed(self, event: TaskConfirmed, uow: UnitOfWork) -> None:
        await runs.record_label(uow, event=event, threshold=self._settings.mlops_retrain_corrections)

    async def swap_reported(self, event: ModelSwapReported, uow: UnitOfWork) -> None:
        await deploys.record_swap(uow.session, event=event)

    async def signal_reported(self, event: ModelSignalReported, uow: UnitOfWork) -> None:
        await deploys.record_signal(uow, event=event, bounds=self._bounds)


class EmbeddedWorker:
    """Embedded mode has no broker and no worker process: training jobs run here, one at
    a time, in the background (the run's row keeps their progress as in the worker)."""

    def __init__(self, settings: MlopsSettings, database: Database) -> None:
        self._settings = settings
        self._database = database
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()

    async def training_requested(self, event: TrainingRequested, uow: UnitOfWork) -> None:
        # After the commit: the job reads the run this very transaction may hold locked.
        uow.after_commit(lambda: self._start(event.run_id))

    async def resume(self) -> None:
        """Runs a previous process left queued or running (its lease runs out, then they rerun)."""
        async with self._database.transaction() as session:
            active = (await session.scalars(select(TrainingRun).where(TrainingRun.status.in_(runs.ACTIVE)))).all()
        for run in active:
            self._start(run.id)

    def _start(self, run_id: uuid.UUID) -> None:
        task = asyncio.get_running_loop().create_task(self._run(run_id), name=f"mlops-run-{run_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, run_id: uuid.UUID) -> None:
        async with self._lock:
            resources = jobs.Resources.open(self._settings)
            try:
                outcome = await jobs.execute(resources=resources, run_id=run_id, worker="embedded")
                log.info("run %s: %s", run_id, outcome)
            except Exception:
                log.exception("run %s could not run", run_id)
            finally:
                await resources.close()

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def subscriptions(consumers: Consumers, embedded: EmbeddedWorker | None = None) -> Subscriptions:
    subs = Subscriptions("mlops")
    if embedded is not None:
        subs.add(TrainingRequested, embedded.training_requested, name="embedded_worker")
    subs.add(TaskConfirmed, consumers.task_confirmed, name="training_labels")
    subs.add(ModelSwapReported, consumers.swap_reported, name="swap_reports")
    subs.add(ModelSignalReported, consumers.signal_reported, name="canary_signals")
    return subs
