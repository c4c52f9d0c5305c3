"""Index documents built from search's own tables: the index is a projection of them,
so building a branch's document twice gives the same document (updates are idempotent)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from common.db import Database
from search.backends.base import BranchDoc
from search.models import Branch, BranchKeywords, BranchTopics, Review, ReviewStats


async def build_docs(
    session: AsyncSession, *, branch_ids: Sequence[str], review_sample: int
) -> tuple[list[BranchDoc], list[str]]:
    """Documents of ``branch_ids``, and the ids to drop from the index (closed or unknown)."""
    branches = (await session.scalars(select(Branch).where(Branch.branch_id.in_(branch_ids)))).all()
    live = [branch for branch in branches if not branch.closed]
    gone = sorted(set(branch_ids) - {branch.branch_id for branch in live})
    if not live:
        return [], gone
    ids = [branch.branch_id for branch in live]
    stats = {
        row.branch_id: row
        for row in (await session.scalars(select(ReviewStats).where(ReviewStats.branch_id.in_(ids)))).all()
    }
    keywords = {
        row.branch_id: row
        for row in (await session.scalars(select(BranchKeywords).where(BranchKeywords.branch_id.in_(ids)))).all()
    }
    topics = {
        row.branch_id: row.topics
        for row in (await session.scalars(select(BranchTopics).where(BranchTopics.branch_id.in_(ids)))).all()
    }
    samples: dict[str, list[str]] = {branch_id: [] for branch_id in ids}
    if review_sample > 0:
        ranked = (
            select(
                Review.branch_id,
                Review.text,
                func.row_number()
                .over(partition_by=Review.branch_id, order_by=(Review.posted_at.desc(), Review.review_id))
                .label("position"),
            )
            .where(Review.branch_id.in_(ids))
            .subquery()
        )
        rows = await session.execute(
            select(ranked.c.branch_id, ranked.c.text).where(ranked.c.position <= review_sample)
        )
        for branch_id, text in rows.all():
            if text:
                samples[branch_id].append(text)
    docs = []
    for branch in live:
        stat = stats.get(branch.branch_id)
        extracted = keywords.get(branch.branch_id)
        count = stat.review_count if stat else 0
        docs.append(
            BranchDoc(
                branch_id=branch.branch_id,
                version=branch.version,
                name=branch.name,
                address=branch.address,
                description=branch.description,
                lat=branch.lat,
                lon=branch.lon,
                open_24h=branch.open_24h,
                weekly_hours=[(int(day), str(opens), str(closes)) for day, opens, closes in branch.weekly_hours],
                facilities=list(branch.facilities),
                tags=sorted({*(extracted.tags if extracted else ()), *topics.get(branch.branch_id, ())}),
                keywords=list(extracted.keywords) if extracted else [],
                monthly_price_krw=branch.monthly_price_krw,
                day_pass_krw=branch.day_pass_krw,
                rating_avg=round(stat.rating_sum / count, 3) if stat and count else 0.0,
                review_count=count,
                photos_count=branch.photos_count,
                review_sample=samples.get(branch.branch_id, []),
            )
        )
    return docs, gone


async def all_docs(database: Database, *, review_sample: int, batch: int = 500) -> AsyncIterator[list[BranchDoc]]:
    """Every live branch's document, in batches (a full rebuild)."""
    async with database.sessions() as session:
        ids = list(
            (
                await session.scalars(
                    select(Branch.branch_id).where(Branch.closed.is_(False)).order_by(Branch.branch_id)
                )
            ).all()
        )
    for start in range(0, len(ids), batch):
        async with database.sessions() as session:
            docs, _gone = await build_docs(session, branch_ids=ids[start : start + batch], review_sample=review_sample)
        yield docs
