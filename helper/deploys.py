"""The task judge's side of model deployment: a fetched pack is loaded, self-tested and
swapped in by ``ClassifierHolder``; the follower in ``common.modelsync`` does the rest.

The live signal a canary is judged by is the owners' override rate: every decided verdict
(pass or fail) the branch owner confirms is a sample, and a sample the owner overrode is
bad. It is counted for the model version that made the verdict (kept on the task), not
for whatever this replica serves now.
"""

from __future__ import annotations

import asyncio
import functools
from pathlib import Path

from common.events.outbox import UnitOfWork
from common.modelsync import PackRefused, SignalWindow, Swapped, elapsed_ms
from contracts import TaskConfirmed
from contracts.models import ModelDeployed
from helper.classifier import ClassifierHolder, PackError
from helper.models import Task

FAMILY = "task_judge"


class TaskJudgeServer:
    family = FAMILY

    def __init__(self, holder: ClassifierHolder) -> None:
        self._holder = holder

    def active_version(self) -> str | None:
        return self._holder.active_version

    def previous_version(self) -> str | None:
        return self._holder.previous_version

    async def install(self, *, pack: Path, event: ModelDeployed) -> Swapped:
        import time

        started = time.perf_counter()
        try:
            await asyncio.to_thread(functools.partial(self._holder.deploy, pack, version=event.version))
        except PackError as exc:
            raise PackRefused(exc.reason) from exc
        return Swapped(event.version, load_ms=elapsed_ms(started))

    async def restore_previous(self) -> Swapped:
        try:
            self._holder.rollback()
        except PackError as exc:
            raise PackRefused(exc.reason) from exc
        return Swapped(self._holder.active_version or "none")


class OverrideSignal:
    """Counts confirmed verdicts and the owners' overrides per model version."""

    def __init__(self, window: SignalWindow) -> None:
        self.window = window

    async def task_confirmed(self, event: TaskConfirmed, uow: UnitOfWork) -> None:
        if event.ai_outcome not in ("pass", "fail"):
            return  # the model left it to the owner: nothing to override
        task = await uow.session.get(Task, event.task_id)
        if task is None or not task.model_version:
            return
        version, overridden = task.model_version, event.ai_overridden
        # Counted once the inbox has recorded the event: a redelivery is not a new sample.
        uow.after_commit(lambda: self.window.record(version, bad=overridden))
