"""What facemodel offers its callers (no web framework here): analyse a frame, identify
against a gallery, manage galleries, deploy and roll back models."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
from numpy.typing import NDArray
from prometheus_client import CollectorRegistry

from facemodel.engine import Analysis, FaceEngine, UInt8Image, decode_image
from facemodel.gallery import Gallery, Match
from facemodel.holder import ModelHolder, SwapReport, warm_up_frame
from facemodel.liveness import LivenessRules, LivenessVerdict, judge_burst
from facemodel.metrics import FaceMetrics
from facemodel.quality import Purpose

T = TypeVar("T")
log = logging.getLogger(__name__)
LOADER_NICE = 5


@dataclass(frozen=True)
class Identification:
    analysis: Analysis
    matches: list[Match]
    threshold: float

    @property
    def best(self) -> Match | None:
        """The best match if it clears the pack's threshold (never a guess below it)."""
        if self.matches and self.matches[0].similarity >= self.threshold:
            return self.matches[0]
        return None


class UnknownGallery(LookupError):
    pass


class FaceService:
    def __init__(
        self,
        holder: ModelHolder,
        *,
        workers: int,
        metrics: FaceMetrics | None = None,
        on_identified: Callable[[str, bool], None] | None = None,
    ) -> None:
        self.holder = holder
        # Told (model version, matched) for every identification of a usable face: the
        # live signal a canary deployment is judged by (no match is a rejected entry).
        self.on_identified = on_identified
        self.metrics = metrics or FaceMetrics(CollectorRegistry())
        self.metrics.active_model.labels(holder.current.label).set(1)
        self.galleries: dict[str, Gallery] = {}
        self.liveness_rules = LivenessRules()
        # Inference runs in worker threads (onnxruntime releases the GIL); the event loop
        # stays free for I/O. One ONNX thread per worker keeps latency predictable.
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="facemodel")
        self._workers = workers
        self._warmed: weakref.WeakSet[FaceEngine] = weakref.WeakSet()
        # Loading and self-testing a new model runs on a thread of its own at a lower CPU
        # priority (nice 5: about a quarter of a busy core's share against a request
        # thread): on a busy node the gate's requests win the cores and the deploy takes a
        # little longer. Nice 19 starved it past a minute on a saturated machine.
        self._loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="facemodel-loader", initializer=_yield_cpu)

    async def warm(self, engine: FaceEngine | None = None) -> None:
        """Analyse a synthetic frame on every inference thread at once, a few times, before
        ``engine`` (the active one by default) serves anybody; once per engine.

        Overlapping runs grow onnxruntime's memory arena and the threads' allocators to
        what the worker count needs: with two workers and the default pack, ~40 MiB at the
        first two entries that overlap, which under a steady load came minutes in as a
        step in RSS (bench/perf_memory.py, ADR 0063). Taken here it is part of the
        start-up size. Only memory is at stake: a failure is logged, never raised."""
        target = engine or self.holder.current
        if target in self._warmed:
            return
        self._warmed.add(target)
        frame = warm_up_frame()

        def analyse_together(together: threading.Barrier) -> None:
            # Every worker thread starts its analysis at the same moment: on a busy machine
            # the runs would otherwise follow one another and grow nothing.
            with contextlib.suppress(threading.BrokenBarrierError):
                together.wait(timeout=5)
            target.analyse(frame)

        try:
            for _ in range(3):
                together = threading.Barrier(self._workers)
                await asyncio.gather(
                    *(self._run(functools.partial(analyse_together, together)) for _ in range(self._workers))
                )
        except Exception:
            log.warning("warming %s up failed; it serves unwarmed", target.label, exc_info=True)

    async def _run(self, function: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, function)

    async def analyse(self, image: bytes, *, purpose: Purpose = "entry", keep_reference: bool = True) -> Analysis:
        engine = self.holder.current  # this request finishes on this engine, swap or not
        analysis = await self._run(lambda: engine.analyse(image, purpose=purpose))
        self._observe(analysis)
        if keep_reference and analysis.aligned is not None:
            self.holder.reference_face = analysis.aligned
        return analysis

    def _observe(self, analysis: Analysis) -> None:
        for stage, milliseconds in analysis.timings_ms.items():
            self.metrics.stage_seconds.labels(stage).observe(milliseconds / 1000)
        self.metrics.outcomes.labels(analysis.quality.code or "ok").inc()

    async def identify(self, image: bytes, *, gallery: str, k: int) -> Identification:
        engine = self.holder.current
        target = self.galleries.get(gallery)
        if target is None:
            raise UnknownGallery(gallery)
        analysis = await self._run(lambda: engine.analyse(image))
        self._observe(analysis)
        if analysis.embedding is None:
            return Identification(analysis, [], engine.manifest.threshold)
        if target.embedding_space != engine.manifest.embedding_space:
            raise UnknownGallery(f"{gallery} holds {target.embedding_space} vectors")
        # The scan is a matrix-vector product over the whole gallery (tens of ms at 1M
        # vectors): off the event loop, so other gates' requests keep being served.
        matches = await self._run(functools.partial(target.identify, analysis.embedding, k=k))
        result = Identification(analysis, matches, engine.manifest.threshold)
        self._identified(engine, result)
        return result

    async def search(
        self, probe: NDArray[np.float32], *, gallery: str, space: str, k: int
    ) -> tuple[list[Match], float]:
        """1:N for a vector already computed (no model run): the matches and the active
        pack's threshold. Off the event loop like ``identify``'s scan (a chain-wide gallery
        is the largest one facemodel holds)."""
        engine = self.holder.current
        target = self.galleries.get(gallery)
        if target is None:
            raise UnknownGallery(gallery)
        if space != engine.manifest.embedding_space or target.embedding_space != space:
            raise UnknownGallery(f"{gallery} holds {target.embedding_space} vectors")
        matches = await self._run(functools.partial(target.identify, probe, k=k))
        return matches, engine.manifest.threshold

    def _identified(self, engine: FaceEngine, result: Identification) -> None:
        if self.on_identified is not None:
            self.on_identified(self.holder.version_of(engine), result.best is not None)

    async def identify_live(
        self, frames: list[bytes], *, gallery: str | None, k: int = 1
    ) -> tuple[Identification, LivenessVerdict]:
        """A burst of frames: liveness first; the first frame is identified only if the
        burst is live (a failed burst learns nothing about who is enrolled)."""
        engine = self.holder.current
        target = None
        if gallery is not None:
            target = self.galleries.get(gallery)
            if target is None:
                raise UnknownGallery(gallery)

        def analysed(frame: bytes) -> tuple[UInt8Image, Analysis]:
            pixels = decode_image(frame)
            return pixels, engine.analyse_pixels(pixels)

        results = await asyncio.gather(*(self._run(functools.partial(analysed, frame)) for frame in frames))
        pixels, analyses = [item[0] for item in results], [item[1] for item in results]
        for analysis in analyses:
            self._observe(analysis)
        threshold = engine.manifest.threshold
        verdict = judge_burst(frames, pixels, analyses, threshold=threshold, rules=self.liveness_rules)
        first = analyses[0]
        matches: list[Match] = []
        if verdict.ok and target is not None and first.embedding is not None:
            if target.embedding_space != engine.manifest.embedding_space:
                raise UnknownGallery(f"{gallery} holds {target.embedding_space} vectors")
            matches = await self._run(functools.partial(target.identify, first.embedding, k=k))
            result = Identification(first, matches, threshold)
            self._identified(engine, result)
            return result, verdict
        return Identification(first, matches, threshold), verdict

    async def verify(self, image: bytes, *, gallery: str, subject: str) -> tuple[Analysis, float | None, float]:
        """1:1: how similar the face in ``image`` is to ``subject``'s enrolled vector."""
        engine = self.holder.current
        target = self.galleries.get(gallery)
        if target is None or subject not in target:
            raise UnknownGallery(f"{gallery}/{subject}")
        analysis = await self._run(lambda: engine.analyse(image))
        self._observe(analysis)
        similarity = target.verify(subject, analysis.embedding) if analysis.embedding is not None else None
        return analysis, similarity, engine.manifest.threshold

    def gallery(self, name: str) -> Gallery:
        manifest = self.holder.current.manifest
        if name not in self.galleries:
            self.galleries[name] = Gallery(manifest.embedding_dim, embedding_space=manifest.embedding_space)
        return self.galleries[name]

    def put_vector(self, gallery: str, subject: str, vector: NDArray[np.float32]) -> None:
        target = self.gallery(gallery)
        target.upsert(subject, vector)
        self.metrics.gallery_size.labels(gallery).set(len(target))

    def put_vectors(self, gallery: str, vectors: dict[str, NDArray[np.float32]]) -> None:
        """Many at once (a gallery loaded at start-up); all or nothing on a bad vector."""
        target = self.gallery(gallery)
        for subject, vector in vectors.items():
            if vector.shape != (target.dimension,) or not np.all(np.isfinite(vector)) or not np.any(vector):
                raise ValueError(f"vector for {subject} is not a finite non-zero {target.dimension}-d vector")
        for subject, vector in vectors.items():
            target.upsert(subject, vector)
        self.metrics.gallery_size.labels(gallery).set(len(target))

    def remove_vector(self, gallery: str, subject: str) -> bool:
        # The reference crop for self-tests is the last enrolment photo's aligned face,
        # whoever it was: an erasure may be that person's, so it goes too (a deploy then
        # self-tests on the synthetic face until the next enrolment).
        self.holder.reference_face = None
        target = self.galleries.get(gallery)
        if target is None:
            return False
        removed = target.remove(subject)
        self.metrics.gallery_size.labels(gallery).set(len(target))
        return removed

    async def deploy(
        self, pack: Path, *, threads: int, version: str | None = None, new_space_approved: bool = False
    ) -> SwapReport:
        prepare = functools.partial(self.holder.prepare, pack, threads=threads, new_space_approved=new_space_approved)
        candidate, load_ms = await asyncio.get_running_loop().run_in_executor(self._loader, prepare)
        await self.warm(candidate)  # on the request threads, as it will run: a few tens of ms
        # The swap itself on the event loop: microseconds, no thread hand-off to wait for.
        report = self.holder.activate(
            candidate, load_ms=load_ms, version=version, new_space_approved=new_space_approved
        )
        return self._swapped(report)

    async def rollback(self, *, new_space_approved: bool = False) -> SwapReport:
        return self._swapped(self.holder.rollback(new_space_approved=new_space_approved))

    def _swapped(self, report: SwapReport) -> SwapReport:
        space = self.holder.current.manifest.embedding_space
        for name in [name for name, gallery in self.galleries.items() if gallery.embedding_space != space]:
            # An approved re-enrolment moved to another space: the old vectors cannot match
            # any more; access re-sends the gallery as members are re-enrolled.
            del self.galleries[name]
            self.metrics.gallery_size.labels(name).set(0)
        self.metrics.swaps.inc()
        if report.previous:
            self.metrics.active_model.labels(report.previous).set(0)
        self.metrics.active_model.labels(report.active).set(1)
        return report

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._loader.shutdown(wait=True, cancel_futures=True)


def _yield_cpu() -> None:
    """A lower scheduling priority for the calling thread (Linux sets nice per thread)."""
    with contextlib.suppress(OSError, AttributeError):  # elsewhere: the normal priority
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), LOADER_NICE)
