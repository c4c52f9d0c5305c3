"""The cold path's intake: branch profiles, reviews, owners' topics and visits, from
events into search's own tables. Every function runs inside the consumer's unit of work
(idempotent through the kernel's inbox); the index follows after the commit."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Table, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from common.events.envelope import utc_now
from contracts import AccessGranted, BranchPreferenceCreated, ReviewPosted
from contracts.branches import BranchInfo
from search.models import Branch, BranchTopics, EnrichmentDue, Review, ReviewStats, Visit

# Reviews come in bursts: wait a little so one extraction covers several.
ENRICH_DELAY = timedelta(seconds=5)


def _insert(session: AsyncSession, table: Table) -> Any:
    return (sqlite.insert if session.get_bind().dialect.name == "sqlite" else postgresql.insert)(table)


async def upsert(
    session: AsyncSession, table: Table, values: Mapping[str, Any], *, keys: list[str], update: Mapping[str, Any]
) -> None:
    statement = _insert(session, table).values(**values)
    await session.execute(statement.on_conflict_do_update(index_elements=keys, set_=dict(update)))


_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_MONTHLY = ("month", "월", "개월")
_DAILY = ("day", "일일", "1일", "하루")


_MAX_PRICE_KRW = 2**31 - 1


def _price(event: BranchInfo, words: tuple[str, ...]) -> int | None:
    """The cheapest price whose name says it is monthly (or daily): "1 month", "1개월"…

    An amount past the index's 32-bit column (a typo stored before the owner console
    bounded prices) is left out rather than parking the whole branch."""
    amounts = [
        price.amount_krw
        for price in event.prices
        if price.amount_krw <= _MAX_PRICE_KRW and any(word in price.name.lower() for word in words)
    ]
    return min(amounts) if amounts else None


def _description(event: BranchInfo) -> str:
    """The owner's text, plus the equipment list in words (a rack count is searchable)."""
    equipment = ", ".join(f"{kind.replace('_', ' ')} {count}" for kind, count in sorted(event.equipment.items()))
    return " ".join(part for part in (event.description, equipment) if part)


async def apply_branch_info(session: AsyncSession, *, event: BranchInfo) -> bool:
    """Keep the profile if it is newer than the one stored; True when it changed."""
    current = await session.get(Branch, event.branch_id, with_for_update=True)
    if current is not None and current.version >= event.revision:
        return False
    values = {
        "version": event.revision,
        "name": event.name,
        "address": event.address,
        "description": _description(event),
        "lat": event.lat,
        "lon": event.lon,
        # The contract: a branch without any opening hours is open around the clock.
        "open_24h": event.open_24h or not event.hours,
        "weekly_hours": [[_WEEKDAYS.index(item.day), item.open, item.close] for item in event.hours],
        "facilities": sorted(set(event.facilities)),
        "monthly_price_krw": _price(event, _MONTHLY),
        "day_pass_krw": _price(event, _DAILY),
        "photos_count": len(event.photo_urls),
        "closed": event.closed,
        "updated_at": utc_now(),
    }
    if current is None:
        session.add(Branch(branch_id=event.branch_id, **values))
    else:
        for key, value in values.items():
            setattr(current, key, value)
    await session.flush()
    if not event.closed:
        await enrichment_due(session, branch_id=event.branch_id, now=utc_now())
    return True


async def record_review(session: AsyncSession, *, event: ReviewPosted) -> bool:
    """A new review, or an edit (same review, higher revision); True when it changed."""
    table = ReviewStats.__table__
    assert isinstance(table, Table)
    stored = await session.get(Review, event.review_id, with_for_update=True)
    if stored is not None:
        if stored.revision >= event.revision:
            return False  # a redelivery or an older copy
        delta = event.rating - stored.rating
        stored.rating, stored.text, stored.revision = event.rating, event.text, event.revision
        await session.flush()
        if delta:
            await session.execute(
                update(ReviewStats)
                .where(ReviewStats.branch_id == stored.branch_id)
                .values(rating_sum=ReviewStats.rating_sum + delta)
            )
        await enrichment_due(session, branch_id=stored.branch_id, now=utc_now())
        return True
    session.add(
        Review(
            review_id=event.review_id,
            branch_id=event.branch_id,
            member_id=event.member_id,
            rating=event.rating,
            text=event.text,
            revision=event.revision,
            posted_at=event.posted_at,
        )
    )
    await session.flush()
    # One statement: concurrent consumers on PostgreSQL cannot lose an increment.
    await upsert(
        session,
        table,
        {"branch_id": event.branch_id, "rating_sum": event.rating, "review_count": 1},
        keys=["branch_id"],
        update={
            "rating_sum": table.c.rating_sum + event.rating,
            "review_count": table.c.review_count + 1,
        },
    )
    await enrichment_due(session, branch_id=event.branch_id, now=utc_now())
    return True


async def record_topics(session: AsyncSession, *, event: BranchPreferenceCreated) -> None:
    topics = sorted({topic.strip().lower()[:40] for topic in event.topics if topic.strip()})
    table = BranchTopics.__table__
    assert isinstance(table, Table)
    now = utc_now()
    await upsert(
        session,
        table,
        {"branch_id": event.branch_id, "topics": topics, "updated_at": now},
        keys=["branch_id"],
        update={"topics": topics, "updated_at": now},
    )


async def record_visit(session: AsyncSession, *, event: AccessGranted) -> bool:
    if event.direction != "in" or event.member_id is None:
        return False
    table = Visit.__table__
    assert isinstance(table, Table)
    await upsert(
        session,
        table,
        {"member_id": event.member_id, "branch_id": event.branch_id, "visits": 1, "last_at": event.decided_at},
        keys=["member_id", "branch_id"],
        update={"visits": table.c.visits + 1, "last_at": event.decided_at},
    )
    return True


async def enrichment_due(session: AsyncSession, *, branch_id: str, now: datetime) -> None:
    """Ask the cold path to re-extract this branch's keywords: a few seconds after the
    last change, so a burst of reviews costs one extraction. Moving ``due_at`` also tells
    a worker already busy with this branch that its result is stale (see
    :mod:`search.enrichment`)."""
    table = EnrichmentDue.__table__
    assert isinstance(table, Table)
    due = now + ENRICH_DELAY
    statement = _insert(session, table).values(branch_id=branch_id, due_at=due, attempts=0)
    await session.execute(
        statement.on_conflict_do_update(index_elements=["branch_id"], set_={"due_at": due, "attempts": 0})
    )


async def visits_of(session: AsyncSession, *, member_id: Any) -> dict[str, int]:
    rows = await session.execute(select(Visit.branch_id, Visit.visits).where(Visit.member_id == member_id))
    return {branch_id: visits for branch_id, visits in rows.all()}


async def reviews_of(
    session: AsyncSession, *, branch_id: str, limit: int, before: datetime | None = None
) -> list[Review]:
    statement = select(Review).where(Review.branch_id == branch_id)
    if before is not None:
        statement = statement.where(Review.posted_at < before)
    statement = statement.order_by(Review.posted_at.desc(), Review.review_id).limit(limit)
    return list((await session.scalars(statement)).all())
