"""Keeps the index in step with search's tables: committed changes mark branches dirty,
one background task rebuilds their documents and writes them in batches.

Documents are rebuilt from the tables rather than patched, so an event applied twice,
or two events in any order, leave the same document: updates are idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable

from prometheus_client import Counter, Histogram

from common.db import Database
from common.observability import LATENCY_BUCKETS, Metrics
from search.backends.base import SearchBackend
from search.catalogue import Catalogue
from search.documents import all_docs, build_docs

log = logging.getLogger(__name__)


class IndexMetrics:
    def __init__(self, metrics: Metrics) -> None:
        self.docs = Counter(
            "smartgym_search_indexed_documents_total", "Documents written to the index.", registry=metrics.registry
        )
        self.flush_seconds = Histogram(
            "smartgym_search_index_flush_seconds",
            "Time to rebuild and write one batch of dirty branches.",
            buckets=LATENCY_BUCKETS,
            registry=metrics.registry,
        )


class IndexUpdater:
    def __init__(
        self,
        *,
        database: Database,
        backend: SearchBackend,
        catalogue: Catalogue,
        review_sample: int,
        flush_s: float,
        metrics: IndexMetrics,
        batch: int = 500,
    ) -> None:
        self._database = database
        self._backend = backend
        self._catalogue = catalogue
        self._review_sample = review_sample
        self._flush_s = flush_s
        self._metrics = metrics
        self._batch = batch
        self._dirty: set[str] = set()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()  # a flush and a rebuild never interleave
        # Set once the catalogue is loaded: the API waits for it instead of answering
        # from an empty catalogue.
        self.ready = asyncio.Event()
        self._loading: asyncio.Task[None] | None = None

    def mark(self, branch_ids: Iterable[str]) -> None:
        self._dirty.update(branch_ids)
        if self._dirty:
            self._idle.clear()
            self._wake.set()

    async def start(self, *, warming: asyncio.Future[None] | None = None) -> None:
        """Load the catalogue in the background (after ``warming``, Kiwi's model load), so
        the service listens at once; flushes wait for the load (they share the lock)."""
        self._loading = asyncio.create_task(self._load(warming), name="search-catalogue-load")
        self._task = asyncio.create_task(self._run(), name="search-index-updater")

    async def _load(self, warming: asyncio.Future[None] | None) -> None:
        async with self._lock:
            if warming is not None:
                await warming
            docs = await self._backend.all_docs()
            await asyncio.to_thread(self._catalogue.replace, docs)
        self.ready.set()

    async def stop(self) -> None:
        if self._loading is not None and not self._loading.done():
            self._loading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loading
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._dirty:
            with contextlib.suppress(Exception):
                await self.flush()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await asyncio.sleep(self._flush_s)  # let a burst of events share one commit
            try:
                await self.flush()
            except Exception:
                log.warning("index update failed; retrying", exc_info=True)
                await asyncio.sleep(1.0)
                self._wake.set()

    async def flush(self) -> int:
        """Write every dirty branch's document now; returns how many were written."""
        written = 0
        async with self._lock:
            while self._dirty:
                batch = sorted(self._dirty)[: self._batch]
                self._dirty.difference_update(batch)
                try:
                    with self._metrics.flush_seconds.time():
                        async with self._database.sessions() as session:
                            docs, gone = await build_docs(session, branch_ids=batch, review_sample=self._review_sample)
                        await self._backend.upsert(docs)
                        await self._backend.delete(gone)
                except BaseException:
                    self._dirty.update(batch)  # not lost: tried again on the next round
                    raise
                self._catalogue.update(docs, gone)
                self._metrics.docs.inc(len(docs))
                written += len(docs)
            self._idle.set()
        return written

    async def settled(self) -> None:
        """Wait until nothing is dirty (tests, the CLI)."""
        await self._idle.wait()

    async def refresh_catalogue(self) -> None:
        """Re-read every document from the engine (other replicas write it too)."""
        async with self._lock:
            self._catalogue.replace(await self._backend.all_docs())

    async def rebuild(self) -> int:
        """Rebuild the whole index from the tables (new index, then switch)."""
        async with self._lock:
            docs = [doc async for batch in all_docs(self._database, review_sample=self._review_sample) for doc in batch]
            count = await self._backend.rebuild(docs)
            self._catalogue.replace(docs)
            self._metrics.docs.inc(count)
        return count
