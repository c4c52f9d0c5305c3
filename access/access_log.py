"""Reading the access log: who came through which gate, filtered and paged."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import Select, select

from access.models import AccessAttempt
from contracts import EntryMethod


@dataclass(frozen=True)
class LogQuery:
    branch_ids: Sequence[str] | None  # None: every branch (operators)
    member_id: uuid.UUID | None = None
    gate_id: str | None = None
    outcome: Literal["granted", "denied"] | None = None
    method: EntryMethod | None = None
    since: datetime | None = None
    until: datetime | None = None
    before_id: int | None = None
    limit: int = 50

    def statement(self) -> Select[AccessAttempt]:
        """The newest attempts first, filtered and paged by id."""
        statement = select(AccessAttempt).order_by(AccessAttempt.id.desc()).limit(self.limit)
        if self.branch_ids is not None:
            statement = statement.where(AccessAttempt.branch_id.in_(self.branch_ids))
        if self.member_id is not None:
            statement = statement.where(AccessAttempt.member_id == self.member_id)
        if self.gate_id is not None:
            statement = statement.where(AccessAttempt.gate_id == self.gate_id)
        if self.outcome is not None:
            statement = statement.where(AccessAttempt.outcome == self.outcome)
        if self.method is not None:
            statement = statement.where(AccessAttempt.method == self.method)
        if self.since is not None:
            statement = statement.where(AccessAttempt.decided_at >= self.since)
        if self.until is not None:
            statement = statement.where(AccessAttempt.decided_at < self.until)
        if self.before_id is not None:
            statement = statement.where(AccessAttempt.id < self.before_id)
        return statement
