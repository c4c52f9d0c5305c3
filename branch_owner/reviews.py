"""Members' reviews of branches: one per member and branch, editable; owners reply;
anybody signed in may report a review as abusive."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from branch_owner.models import Branch, Review, ReviewReport
from common.db import Database
from common.events.envelope import utc_now
from common.kernel import ServiceKernel
from contracts import ReviewPosted

# Reviews reported by this many people are left out of public listings until an
# operator looks at them; staff still see them.
HIDE_AFTER_REPORTS = 3


class ReviewRefused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


async def post(kernel: ServiceKernel, *, branch_id: str, member_id: uuid.UUID, rating: int, text: str) -> Review:
    """Post the member's review of the branch, or edit the one they posted."""
    now = utc_now()
    try:
        async with kernel.unit_of_work() as uow:
            if await uow.session.get(Branch, branch_id) is None:
                raise ReviewRefused(404, "no such branch")
            review = await uow.session.scalar(
                select(Review).where(Review.branch_id == branch_id, Review.member_id == member_id).with_for_update()
            )
            if review is None:
                review = Review(
                    id=uuid.uuid4(), branch_id=branch_id, member_id=member_id, revision=0, created_at=now, reports=0
                )
                uow.session.add(review)
            elif (review.rating, review.text) == (rating, text):
                return review
            review.rating, review.text, review.updated_at = rating, text, now
            review.revision += 1
            uow.emit(
                ReviewPosted(
                    review_id=review.id,
                    branch_id=branch_id,
                    member_id=member_id,
                    rating=rating,
                    text=text,
                    revision=review.revision,
                    posted_at=now,
                )
            )
    except IntegrityError as exc:
        # The member's first review raced another first review of theirs.
        raise ReviewRefused(409, "your review was just posted from elsewhere; try again") from exc
    return review


async def of_branch(database: Database, *, branch_id: str, limit: int, include_hidden: bool) -> Sequence[Review]:
    query = select(Review).where(Review.branch_id == branch_id)
    if not include_hidden:
        query = query.where(Review.reports < HIDE_AFTER_REPORTS)
    async with database.sessions() as session:
        return (await session.scalars(query.order_by(Review.updated_at.desc()).limit(limit))).all()


async def get(database: Database, *, review_id: uuid.UUID) -> Review | None:
    async with database.sessions() as session:
        return await session.get(Review, review_id)


async def reply(database: Database, *, review_id: uuid.UUID, text: str, by: uuid.UUID) -> Review:
    async with database.transaction() as session:
        review = await session.get(Review, review_id, with_for_update=True)
        if review is None:
            raise ReviewRefused(404, "no such review")
        review.reply, review.replied_by, review.replied_at = text, by, utc_now()
        return review


async def report(database: Database, *, review_id: uuid.UUID, reporter_id: uuid.UUID, reason: str) -> int:
    """Record one person's report; returns how many people have reported the review."""
    try:
        async with database.transaction() as session:
            review = await session.get(Review, review_id, with_for_update=True)
            if review is None:
                raise ReviewRefused(404, "no such review")
            session.add(ReviewReport(review_id=review_id, reporter_id=reporter_id, reason=reason, created_at=utc_now()))
            await session.flush()
            review.reports += 1
            return review.reports
    except IntegrityError as exc:
        raise ReviewRefused(409, "you have reported this review already") from exc
