"""One job, start to end: claim the run, do the work, commit the result under the lease.

The worker process and the embedded mode both run jobs through :func:`execute`. Whatever
happens to the process or the broker, the result is written at most once (the lease
fences it) and the message is acknowledged only after it is written, so it is written at
least once: a job completes exactly once.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncEngine

from common.db import Database
from common.objectstore import ObjectStore
from mlops import pipeline, readonly, registry, runs, taskpack
from mlops.models import FamilyState, ModelVersion, TrainingRun
from mlops.packs import download_pack, pack_store, photo_store, upload_pack
from mlops.runs import Cancelled, LeaseLost
from mlops.settings import MlopsSettings
from mlops.verification import verify_face

log = logging.getLogger(__name__)

Outcome = Literal["succeeded", "failed", "cancelled", "finished", "unknown", "busy", "lost"]


class JobFailed(Exception):
    """The job cannot produce a result (too little data, a broken pack): recorded as failed."""


@dataclass
class Resources:
    settings: MlopsSettings
    database: Database
    packs: ObjectStore
    photos: ObjectStore
    reader: AsyncEngine

    @classmethod
    def open(cls, settings: MlopsSettings) -> Resources:
        return cls(
            settings,
            Database(settings.database_url("mlops"), pool_size=2),
            pack_store(settings),
            photo_store(settings),
            readonly.reader_engine(settings, "helper"),
        )

    async def close(self) -> None:
        await self.reader.dispose()
        await self.photos.close()
        await self.packs.close()
        await self.database.dispose()


async def execute(
    *, resources: Resources, run_id: uuid.UUID, worker: str, stop: threading.Event | None = None
) -> Outcome:
    settings = resources.settings
    lease_s = settings.mlops_job_lease_s
    while True:
        async with resources.database.transaction() as session:
            claim = await runs.claim(session, run_id=run_id, worker=worker, lease_s=lease_s)
        if claim.outcome != "busy":
            break
        # Another worker's lease: it may be alive (then it finishes) or dead (then its
        # lease runs out and this delivery takes the job over).
        if stop is not None and stop.is_set():
            return "busy"
        await asyncio.sleep(min(max(claim.retry_after_s, 0.1) + 0.1, 5.0))
    if claim.outcome in ("finished", "unknown"):
        return claim.outcome
    run = claim.run
    assert run is not None

    steps: list[str] = []

    async def progress(step: str, fraction: float) -> None:
        if settings.mlops_worker_step_pause_s and step not in steps:
            await asyncio.sleep(settings.mlops_worker_step_pause_s)
        steps.append(step)
        async with resources.database.transaction() as session:
            await runs.report_progress(
                session, run_id=run_id, worker=worker, lease_s=lease_s, step=step, progress=fraction
            )

    try:
        if run.kind == "train":
            await _train(resources, run, worker, progress)
        else:
            await _verify(resources, run, worker, progress)
        return "succeeded"
    except Cancelled:
        return await _close(resources, run_id, worker, "cancelled", None)
    except LeaseLost:
        log.warning("lost the lease on run %s: another worker has it", run_id)
        return "lost"
    except JobFailed as exc:
        return await _close(resources, run_id, worker, "failed", str(exc))
    except Exception as exc:
        log.exception("run %s failed", run_id)
        return await _close(resources, run_id, worker, "failed", f"{type(exc).__name__}: {exc}")


async def _close(resources: Resources, run_id: uuid.UUID, worker: str, status: Any, error: str | None) -> Outcome:
    try:
        async with resources.database.transaction() as session:
            await runs.finish(session, run_id=run_id, worker=worker, status=status, error=error)
    except LeaseLost:
        return "lost"
    outcome: Outcome = status
    return outcome


async def _stable(resources: Resources, family: str) -> ModelVersion | None:
    async with resources.database.transaction() as session:
        state = await session.get(FamilyState, family)
        if state is None or state.stable_version is None:
            return None
        return await registry.find(session, family=family, version=state.stable_version)


async def _dataset(resources: Resources, progress: pipeline.Progress) -> tuple[pipeline.Dataset, pipeline.Split]:
    settings = resources.settings
    await progress("collect", 0.05)
    dataset = await pipeline.collect(
        database=resources.database,
        reader=resources.reader,
        photos=resources.photos,
        progress=progress,
        size=taskpack.INPUT_SIZE,
    )
    if len(dataset.examples) < settings.mlops_min_training_labels:
        raise JobFailed(
            f"{len(dataset.examples)} labelled tasks with photos; training needs {settings.mlops_min_training_labels}"
        )
    await progress("split", 0.4)
    split = pipeline.split(
        dataset.examples, holdout_share=settings.mlops_holdout_share, time_share=settings.mlops_holdout_time_share
    )
    if not split.test or len({example.done for example in split.train}) < 2:
        raise JobFailed(
            f"the split left {len(split.train)} training and {len(split.test)} held-out tasks: "
            "both labels are needed to train and some tasks to measure on"
        )
    return dataset, split


async def _train(resources: Resources, run: TrainingRun, worker: str, progress: pipeline.Progress) -> None:
    settings = resources.settings
    dataset, split = await _dataset(resources, progress)
    await progress("train", 0.5)
    trained = await asyncio.to_thread(pipeline.train, split)
    async with resources.database.transaction() as session:
        version = await runs.allocate_version(session, run_id=run.id, worker=worker, family=run.family)
    await progress("export", 0.6)
    files = taskpack.pack_files(trained.model_bytes, version=version)
    stable = await _stable(resources, run.family)
    with tempfile.TemporaryDirectory(prefix="mlops-candidate-") as scratch:
        directory = Path(scratch)
        for name, data in files:
            (directory / name).write_bytes(data)
        await progress("evaluate", 0.7)
        report = await pipeline.evaluate(
            candidate_dir=directory,
            deployed_files=registry.pack_files(stable) if stable else None,
            packs=resources.packs,
            test=split.test,
            settings=settings,
        )
    await progress("upload", 0.9)
    described = await upload_pack(resources.packs, family=run.family, version=version, files=files)
    metrics = {**trained.metrics, **report.metrics, "left_out_tasks": split.left_out}
    async with resources.database.transaction() as session:
        await registry.register(
            session,
            family=run.family,
            version=version,
            files=described,
            code_version=settings.mlops_code_version,
            data_snapshot_id=dataset.snapshot_id,
            parameters={
                **trained.parameters,
                "holdout_share": settings.mlops_holdout_share,
                "holdout_time_share": settings.mlops_holdout_time_share,
                "split_cutoff": split.cutoff.isoformat() if split.cutoff else None,
            },
            parent_version=stable.version if stable else None,
            metrics=metrics,
            run_id=run.id,
        )
        await registry.record_verification(
            session, family=run.family, version=version, passed=report.passed, report=report.as_dict()
        )
        # The fence: raises LeaseLost (and rolls all of this back) if the run is not ours.
        await runs.finish(
            session,
            run_id=run.id,
            worker=worker,
            status="succeeded",
            version=version,
            result={"version": version, **report.as_dict(), "data_snapshot_id": dataset.snapshot_id},
        )


async def _verify(resources: Resources, run: TrainingRun, worker: str, progress: pipeline.Progress) -> None:
    settings = resources.settings
    if run.version is None:
        raise JobFailed("a verify run names the version to verify")
    async with resources.database.transaction() as session:
        row = await registry.get(session, family=run.family, version=run.version)
    stable = await _stable(resources, run.family)
    if stable is not None and stable.version == row.version:
        stable = None
    with tempfile.TemporaryDirectory(prefix="mlops-verify-") as scratch:
        await progress("download", 0.1)
        candidate_dir = await download_pack(resources.packs, registry.pack_files(row), Path(scratch) / "candidate")
        if run.family == "face":
            deployed_dir = None
            if stable is not None:
                deployed_dir = await download_pack(resources.packs, registry.pack_files(stable), Path(scratch) / "old")
            await progress("evaluate", 0.5)
            report = await asyncio.to_thread(
                verify_face,
                candidate_dir=candidate_dir,
                deployed_dir=deployed_dir,
                settings=settings,
                reenrolment_plan=row.parameters.get("reenrolment_plan"),
            )
        else:
            _, split = await _dataset(resources, progress)
            await progress("evaluate", 0.7)
            gate = await pipeline.evaluate(
                candidate_dir=candidate_dir,
                deployed_files=registry.pack_files(stable) if stable else None,
                packs=resources.packs,
                test=split.test,
                settings=settings,
            )
            report = gate.as_dict()
    async with resources.database.transaction() as session:
        await registry.record_verification(
            session, family=run.family, version=row.version, passed=bool(report["passed"]), report=report
        )
        await runs.finish(session, run_id=run.id, worker=worker, status="succeeded", result=report)
