"""The cold path's worker: branches whose reviews or profile changed get their tags and
keywords re-extracted — by the LLM partner when one is configured and affordable, by
the offline extractor otherwise — and their documents re-indexed.

A worker leases a due row by moving its ``due_at`` past the lease; it deletes the row
only if ``due_at`` still holds its lease, so a review that arrived meanwhile (which
moves ``due_at`` again) gets its own extraction. Replicas share the rows safely.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from prometheus_client import Counter
from sqlalchemy import Table, delete, select, update

from common.db import Database
from common.events.envelope import utc_now
from common.observability import Metrics
from search.branches import upsert
from search.indexing import IndexUpdater
from search.keywords import Extraction, extract_offline
from search.llm import LlmClient, PartnerUnavailable
from search.models import Branch, BranchKeywords, EnrichmentDue, Review

log = logging.getLogger(__name__)

LEASE = timedelta(minutes=2)
# After a partner failure the offline result stands; the partner is asked again later.
RETRY_PARTNER_AFTER = timedelta(minutes=30)


class EnrichmentMetrics:
    def __init__(self, metrics: Metrics) -> None:
        self.extractions = Counter(
            "smartgym_search_extractions_total",
            "Keyword extractions by source (llm, offline) and outcome.",
            ["source", "outcome"],
            registry=metrics.registry,
        )


@dataclass
class Enricher:
    database: Database
    updater: IndexUpdater
    metrics: EnrichmentMetrics
    llm: LlmClient | None
    batch: int
    reviews_per_branch: int

    async def run_once(self, *, now: datetime | None = None) -> int:
        """Extract for every due branch (up to one batch); returns how many were done."""
        now = now or utc_now()
        leased = await self._lease(now)
        done: list[str] = []
        for branch_id, lease in leased:
            if await self._enrich(branch_id, lease, now):
                done.append(branch_id)
        if done:
            self.updater.mark(done)
        return len(done)

    async def _lease(self, now: datetime) -> list[tuple[str, datetime]]:
        lease = now + LEASE
        async with self.database.transaction() as session:
            rows = (
                await session.scalars(
                    select(EnrichmentDue.branch_id)
                    .where(EnrichmentDue.due_at <= now)
                    .order_by(EnrichmentDue.due_at)
                    .limit(self.batch)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            if rows:
                await session.execute(
                    update(EnrichmentDue)
                    .where(EnrichmentDue.branch_id.in_(rows))
                    .values(due_at=lease, attempts=EnrichmentDue.attempts + 1)
                )
        return [(branch_id, lease) for branch_id in rows]

    async def _enrich(self, branch_id: str, lease: datetime, now: datetime) -> bool:
        async with self.database.sessions() as session:
            branch = await session.get(Branch, branch_id)
            reviews = (
                await session.scalars(
                    select(Review.text)
                    .where(Review.branch_id == branch_id)
                    .order_by(Review.posted_at.desc())
                    .limit(self.reviews_per_branch)
                )
            ).all()
        if branch is None:
            await self._finish(branch_id, lease, None)
            return False
        texts = [text for text in reviews if text]
        extraction: Extraction
        retry_later = False
        if self.llm is not None:
            try:
                extraction = await self.llm.extract(name=branch.name, description=branch.description, reviews=texts)
                self.metrics.extractions.labels("llm", "ok").inc()
            except PartnerUnavailable as exc:
                log.warning("LLM extraction failed, offline extractor instead: %s", exc)
                self.metrics.extractions.labels("llm", "failed").inc()
                extraction = extract_offline(description=branch.description, reviews=texts)
                retry_later = True
        else:
            extraction = extract_offline(description=branch.description, reviews=texts)
        self.metrics.extractions.labels(extraction.source, "stored").inc()
        await self._finish(
            branch_id, lease, extraction, len(texts), retry_at=now + RETRY_PARTNER_AFTER if retry_later else None
        )
        return True

    async def _finish(
        self,
        branch_id: str,
        lease: datetime,
        extraction: Extraction | None,
        reviews_seen: int = 0,
        *,
        retry_at: datetime | None = None,
    ) -> None:
        async with self.database.transaction() as session:
            if extraction is not None:
                table = BranchKeywords.__table__
                assert isinstance(table, Table)
                values = {
                    "tags": extraction.tags,
                    "keywords": extraction.keywords,
                    "source": extraction.source,
                    "reviews_seen": reviews_seen,
                    "extracted_at": utc_now(),
                }
                await upsert(session, table, {"branch_id": branch_id, **values}, keys=["branch_id"], update=values)
            still_ours = (EnrichmentDue.branch_id == branch_id) & (EnrichmentDue.due_at == lease)
            if retry_at is not None:
                await session.execute(update(EnrichmentDue).where(still_ours).values(due_at=retry_at))
            else:
                await session.execute(delete(EnrichmentDue).where(still_ours))
