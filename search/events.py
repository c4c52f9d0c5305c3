"""Every event search consumes, and who handles it."""

from __future__ import annotations

from common.events.bus import Subscriptions
from common.events.outbox import UnitOfWork
from contracts import (
    AccessGranted,
    BranchInfoCreated,
    BranchInfoUpdated,
    BranchPreferenceCreated,
    ReviewPosted,
)
from search.branches import apply_branch_info, record_review, record_topics, record_visit
from search.indexing import IndexUpdater


class Intake:
    """Event handlers: write the tables in the consumer's transaction, then (after the
    commit) tell the index updater which branches changed."""

    def __init__(self, updater: IndexUpdater) -> None:
        self._updater = updater

    def _reindex_after_commit(self, uow: UnitOfWork, branch_id: str) -> None:
        uow.after_commit(lambda: self._updater.mark([branch_id]))

    async def branch_info(self, event: BranchInfoCreated | BranchInfoUpdated, uow: UnitOfWork) -> None:
        if await apply_branch_info(uow.session, event=event):
            self._reindex_after_commit(uow, event.branch_id)

    async def review(self, event: ReviewPosted, uow: UnitOfWork) -> None:
        if await record_review(uow.session, event=event):
            self._reindex_after_commit(uow, event.branch_id)

    async def preference(self, event: BranchPreferenceCreated, uow: UnitOfWork) -> None:
        await record_topics(uow.session, event=event)
        self._reindex_after_commit(uow, event.branch_id)

    async def visit(self, event: AccessGranted, uow: UnitOfWork) -> None:
        await record_visit(uow.session, event=event)


def subscriptions(intake: Intake) -> Subscriptions:
    subs = Subscriptions("search")
    subs.add(BranchInfoCreated, intake.branch_info, name="branch_created")
    subs.add(BranchInfoUpdated, intake.branch_info, name="branch_updated")
    subs.add(ReviewPosted, intake.review, name="review_posted")
    subs.add(BranchPreferenceCreated, intake.preference, name="branch_preference")
    subs.add(AccessGranted, intake.visit, name="visits")
    return subs
