"""The task judge's training pipeline: collect → split → train → export → evaluate → gate.

* collect: every owner label mlops has seen (TaskConfirmed), with the task's photos read
  from helper's database (read-only role) and photo store (read only). The data snapshot
  id is a digest of the (task, label) pairs, so the same data gives the same id.
* split, by helper and by time: the held-out set is the tasks of a stable hash-chosen
  share of helpers decided in the latest share of the time range; training uses the other
  helpers' tasks from before that range. The two mixed quadrants are left out, so no
  helper and no period is on both sides (a model cannot score by recognising a helper's
  camera or a week's lighting).
* gate: on that same held-out set the candidate must be at least as accurate as the
  deployed version (or reach a floor when none is deployed), answer within the latency
  budget, and pass the pack self-test the instances run.
"""

from __future__ import annotations

import asyncio
import hashlib
import tempfile
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from common.db import Database
from common.objectstore import ObjectStore
from mlops import readonly, taskpack
from mlops.models import TaskLabel
from mlops.packs import download_pack
from mlops.settings import MlopsSettings
from mlops.taskpack import LoadedPack, PackInvalid

Progress = Callable[[str, float], Awaitable[None]]


@dataclass(frozen=True)
class Example:
    task_id: uuid.UUID
    helper_id: uuid.UUID
    decided_at: datetime
    done: bool
    photos: np.ndarray  # k x 3 x S x S


@dataclass(frozen=True)
class Dataset:
    examples: tuple[Example, ...]
    snapshot_id: str
    labels_seen: int
    without_photos: int


@dataclass(frozen=True)
class Split:
    train: tuple[Example, ...]
    test: tuple[Example, ...]
    left_out: int
    cutoff: datetime | None


def snapshot_id(pairs: Sequence[tuple[uuid.UUID, str]]) -> str:
    digest = hashlib.sha256()
    for task_id, label in sorted(pairs):
        digest.update(f"{task_id}:{label}\n".encode())
    return digest.hexdigest()


async def collect(
    *, database: Database, reader: AsyncEngine, photos: ObjectStore, progress: Progress, size: int
) -> Dataset:
    async with database.transaction() as session:
        labels = (await session.scalars(select(TaskLabel).order_by(TaskLabel.decided_at, TaskLabel.task_id))).all()
    rows = await readonly.task_photos(reader, [label.task_id for label in labels])
    by_task: dict[uuid.UUID, list[readonly.PhotoRow]] = {}
    for row in rows:
        by_task.setdefault(row.task_id, []).append(row)
    examples: list[Example] = []
    missing = 0
    for index, label in enumerate(labels):
        stored = by_task.get(label.task_id, [])
        tensors = []
        for photo in stored:
            data = await photos.get(photo.key)
            if hashlib.sha256(data).hexdigest() != photo.sha256:
                continue  # a photo that changed since it was judged is not evidence
            tensors.append(await asyncio.to_thread(taskpack.photo_tensor, data, size))
        if not tensors:
            missing += 1
            continue
        examples.append(
            Example(label.task_id, label.helper_id, label.decided_at, label.final_label == "done", np.stack(tensors))
        )
        if index % 25 == 0:
            await progress("collect", 0.05 + 0.35 * index / max(1, len(labels)))
    pairs = [(example.task_id, "done" if example.done else "not_done") for example in examples]
    return Dataset(tuple(examples), snapshot_id(pairs), len(labels), missing)


def _helper_bucket(helper_id: uuid.UUID) -> float:
    return int.from_bytes(hashlib.sha256(helper_id.bytes).digest()[:8], "big") / 2**64


def split(examples: Sequence[Example], *, holdout_share: float, time_share: float) -> Split:
    """Held out: chosen helpers' tasks in the latest ``time_share`` of the period; train:
    the other helpers' tasks before it. Mixed quadrants are left out."""
    if not examples:
        return Split((), (), 0, None)
    times = sorted(example.decided_at for example in examples)
    cutoff = times[min(len(times) - 1, int(len(times) * (1 - time_share)))]
    train, test, left_out = [], [], 0
    for example in examples:
        held_helper = _helper_bucket(example.helper_id) < holdout_share
        late = example.decided_at >= cutoff
        if held_helper and late:
            test.append(example)
        elif not held_helper and not late:
            train.append(example)
        else:
            left_out += 1
    return Split(tuple(train), tuple(test), left_out, cutoff)


def _photo_matrix(examples: Sequence[Example]) -> tuple[np.ndarray, np.ndarray]:
    tensors = [photo for example in examples for photo in example.photos]
    labels = [float(example.done) for example in examples for _ in example.photos]
    return np.stack(tensors), np.asarray(labels)


def accuracy(pack: LoadedPack, examples: Sequence[Example], *, threshold: float = 0.5) -> float:
    """Task-level: a task is "done" when every photo is (as the judge decides)."""
    if not examples:
        return 0.0
    right = 0
    for example in examples:
        done = float(np.min(pack.probabilities(example.photos))) >= threshold
        right += int(done == example.done)
    return right / len(examples)


@dataclass(frozen=True)
class GateReport:
    passed: bool
    reasons: list[str]
    metrics: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "reasons": self.reasons, "metrics": self.metrics}


def gate(
    *,
    candidate_accuracy: float,
    deployed_accuracy: float | None,
    min_accuracy: float,
    latency: float,
    latency_budget_ms: float,
    self_test: str | None,
    held_out: int,
) -> GateReport:
    reasons = []
    if self_test is not None:
        reasons.append(f"pack self-test failed: {self_test}")
    if held_out == 0:
        reasons.append("no held-out tasks to measure on")
    if deployed_accuracy is not None and candidate_accuracy < deployed_accuracy:
        reasons.append(f"held-out accuracy {candidate_accuracy:.3f} is below the deployed {deployed_accuracy:.3f}")
    if deployed_accuracy is None and candidate_accuracy < min_accuracy:
        reasons.append(f"held-out accuracy {candidate_accuracy:.3f} is below the floor {min_accuracy:.3f}")
    if latency > latency_budget_ms:
        reasons.append(f"inference {latency:.2f} ms is over the budget {latency_budget_ms:.2f} ms")
    metrics = {
        "heldout_accuracy": round(candidate_accuracy, 4),
        "deployed_heldout_accuracy": None if deployed_accuracy is None else round(deployed_accuracy, 4),
        "latency_ms": round(latency, 3),
        "heldout_tasks": held_out,
    }
    return GateReport(not reasons, reasons, metrics)


@dataclass(frozen=True)
class Trained:
    model_bytes: bytes
    parameters: dict[str, Any]
    metrics: dict[str, Any]


def train(split_: Split, *, progress_note: dict[str, Any] | None = None) -> Trained:
    x_photos, y = _photo_matrix(split_.train)
    model = taskpack.train_logistic(taskpack.features(x_photos), y)
    train_accuracy = float(np.mean((model.probabilities(taskpack.features(x_photos)) >= 0.5) == (y >= 0.5)))
    return Trained(
        taskpack.export_onnx(model),
        {**model.parameters, "model": "logistic-regression", **(progress_note or {})},
        {"train_photo_accuracy": round(train_accuracy, 4), "train_tasks": len(split_.train)},
    )


async def evaluate(
    *,
    candidate_dir: Path,
    deployed_files: Sequence[Any] | None,
    packs: ObjectStore,
    test: Sequence[Example],
    settings: MlopsSettings,
) -> GateReport:
    """The verification gate for a task-judge pack already written to ``candidate_dir``."""
    self_test: str | None = None
    candidate: LoadedPack | None = None
    try:
        candidate = await asyncio.to_thread(taskpack.load_pack, candidate_dir)
    except PackInvalid as exc:
        self_test = exc.reason
    deployed_accuracy: float | None = None
    if deployed_files:
        with tempfile.TemporaryDirectory(prefix="mlops-deployed-") as scratch:
            directory = await download_pack(packs, deployed_files, Path(scratch))
            deployed = await asyncio.to_thread(taskpack.load_pack, directory)
            deployed_accuracy = await asyncio.to_thread(accuracy, deployed, test)
    if candidate is None:
        return gate(
            candidate_accuracy=0.0,
            deployed_accuracy=deployed_accuracy,
            min_accuracy=settings.mlops_min_accuracy,
            latency=0.0,
            latency_budget_ms=settings.mlops_latency_budget_ms,
            self_test=self_test,
            held_out=len(test),
        )
    candidate_accuracy = await asyncio.to_thread(accuracy, candidate, test)
    sample = test[0].photos if test else np.zeros((1, 3, candidate.manifest.input_size, candidate.manifest.input_size))
    latency = await asyncio.to_thread(taskpack.latency_ms, candidate, sample)
    return gate(
        candidate_accuracy=candidate_accuracy,
        deployed_accuracy=deployed_accuracy,
        min_accuracy=settings.mlops_min_accuracy,
        latency=latency,
        latency_budget_ms=settings.mlops_latency_budget_ms,
        self_test=None,
        held_out=len(test),
    )
