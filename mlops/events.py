"""Every event mlops consumes, and who handles it."""

from __future__ import annotations

from common.events.bus import Subscriptions
from common.events.outbox import UnitOfWork
from contracts import ModelSignalReported, ModelSwapReported, TaskConfirmed
from mlops import deploys, runs
from mlops.deploys import CanaryBounds
from mlops.settings import MlopsSettings


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


def subscriptions(consumers: Consumers) -> Subscriptions:
    subs = Subscriptions("mlops")
    subs.add(TaskConfirmed, consumers.task_confirmed, name="training_labels")
    subs.add(ModelSwapReported, consumers.swap_reported, name="swap_reports")
    subs.add(ModelSignalReported, consumers.signal_reported, name="canary_signals")
    return subs
