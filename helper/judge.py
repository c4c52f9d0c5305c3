"""The task judge: consumes TaskSubmitted, publishes TaskJudged (version 2).

It runs inside helper (see the ADR on where task inference runs): the photos and the
branch's earlier photo hashes it compares against are helper's own data. It is reached
only through the event, so it can move to a worker of its own without a contract change.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import select

from common.events.envelope import utc_now
from common.events.outbox import UnitOfWork
from contracts import TaskJudgedV2, TaskSubmitted, VerdictReason
from helper.checks import EarlierPhoto, Measured, Thresholds, failed_checks, measure
from helper.classifier import ClassifierHolder, PackError
from helper.models import Task, TaskPhoto
from helper.settings import HelperSettings
from helper.store import PhotoStore


class TaskJudge:
    def __init__(self, *, settings: HelperSettings, store: PhotoStore, classifier: ClassifierHolder) -> None:
        self._settings = settings
        self._store = store
        self._classifier = classifier
        self._limits = Thresholds(
            duplicate_max_distance=settings.judge_duplicate_max_distance,
            blur_min_variance=settings.judge_blur_min_variance,
            dark_min_brightness=settings.judge_dark_min_brightness,
            max_photo_age_s=settings.judge_max_photo_age_s,
        )

    async def task_submitted(self, event: TaskSubmitted, uow: UnitOfWork) -> None:
        session = uow.session
        task = await session.get(Task, event.task_id, with_for_update=True)
        if task is None or task.status != "submitted":
            return  # judged already (a replay), or not ours
        photos = (
            await session.scalars(select(TaskPhoto).where(TaskPhoto.task_id == task.id).order_by(TaskPhoto.position))
        ).all()
        contents = [await self._store.get(photo.key) for photo in photos]
        measured: list[Measured] = []
        for photo, data in zip(photos, contents, strict=True):
            measured.append(
                await asyncio.to_thread(
                    measure, photo.position, data, phash=photo.phash, sha256=photo.sha256, captured_at=photo.captured_at
                )
            )
        since = task.submitted_at - timedelta(days=self._settings.judge_duplicate_window_days)
        earlier_rows = await session.execute(
            select(TaskPhoto.task_id, TaskPhoto.phash, TaskPhoto.sha256).where(
                TaskPhoto.branch_id == task.branch_id,
                TaskPhoto.task_id != task.id,
                TaskPhoto.submitted_at >= since,
                TaskPhoto.submitted_at <= task.submitted_at,
            )
        )
        earlier = [EarlierPhoto(str(task_id), phash, sha256) for task_id, phash, sha256 in earlier_rows]
        reasons = failed_checks(
            measured,
            expected=task.expected_photos,
            earlier=earlier,
            submitted_at=task.submitted_at,
            limits=self._limits,
        )
        outcome, confidence, model_version, model_reasons = await self._learned(contents, failed=bool(reasons))
        reasons.extend(model_reasons)
        now = utc_now()
        task.status = "judged"
        task.judged_at = now
        task.outcome = outcome
        task.confidence = confidence
        task.reasons = [reason.model_dump() for reason in reasons]
        task.model_version = model_version
        uow.emit(
            TaskJudgedV2(
                task_id=task.id,
                helper_id=task.helper_id,
                branch_id=task.branch_id,
                task_type=task.task_type,
                category=event.category,
                title=task.title,
                reward_krw=task.reward_krw,
                photos=event.photos,
                submitted_at=task.submitted_at,
                judged_at=now,
                outcome=outcome,
                confidence=confidence,
                reasons=tuple(reasons),
                model_version=model_version,
            )
        )

    async def _learned(self, photos: list[bytes], *, failed: bool) -> tuple[str, float, str, list[VerdictReason]]:
        """(outcome, confidence, model version, reasons). A measured failure is certain
        whatever a model would say; otherwise the model decides, or nobody does."""
        classifier = self._classifier.current
        version = self._classifier.label_of(classifier)
        if failed:
            return "fail", 1.0, version, []
        if classifier is None:
            return (
                "needs_review",
                0.0,
                version,
                [VerdictReason(code="no_model", message="no trained model yet: the branch owner decides")],
            )
        try:
            probabilities = await asyncio.to_thread(classifier.probabilities, photos)
        except PackError as exc:
            return "needs_review", 0.0, version, [VerdictReason(code="model_error", message=exc.reason[:300])]
        done = min(probabilities)  # every photo must show the work done
        threshold = self._settings.judge_pass_threshold
        if done >= threshold:
            return "pass", done, version, []
        if done <= 1 - threshold:
            return "fail", 1 - done, version, [VerdictReason(code="not_done", message=f"model: done {done:.2f}")]
        return (
            "needs_review",
            max(done, 1 - done),
            version,
            [VerdictReason(code="uncertain", message=f"model unsure: done {done:.2f}")],
        )
