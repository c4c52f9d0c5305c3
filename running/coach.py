"""A running coach: answers a member's question about their training from their own
numbers (weekly volume, acute:chronic load, race predictions, the last run).

With an LLM partner configured (any OpenAI-compatible ``/v1/chat/completions``), the
numbers and the question go to it behind a circuit breaker and a daily token budget (the installation's, shared by
every replica);
without one, or when the partner fails, is open-circuited or the budget is spent, a
rule-based answer from the same numbers comes back instead, saying why. The coach is
only ever called from its REST route: never from the live socket path.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from common.chat import ChatCircuitOpen, ChatCompletions, ChatUnavailable
from common.kernel import ServiceKernel
from running.analytics import AnalyticsService
from running.models import CoachUsage

SYSTEM_PROMPT = (
    "You are a careful running coach. Answer in at most five sentences, using only the "
    "runner's numbers given as JSON. Never give medical diagnoses; suggest a professional "
    "for pain or illness."
)


INSTALLATION = "*"  # the row counting every member's tokens


class Budget:
    """The partner's daily allowance for the whole installation: tokens per UTC day across
    every replica, and questions per member, counted in running's own database (the one
    store every replica already shares).

    A question is reserved before the call (an atomic conditional increment, so two
    replicas cannot both take a member's last question) and given back when the partner
    fails; tokens are added after the answer. The token check is a read, so replicas
    answering at the same moment may overshoot the day's tokens by one answer each —
    bounded by ``max_tokens`` per answer, and cheaper than serialising every question.
    """

    def __init__(self, *, kernel: ServiceKernel, tokens_per_day: int, questions_per_member: int) -> None:
        self._kernel = kernel
        self.tokens_per_day = tokens_per_day
        self.questions_per_member = questions_per_member

    def _insert(self, session: AsyncSession) -> Any:
        return sqlite.insert if session.get_bind().dialect.name == "sqlite" else postgresql.insert

    async def reserve(self, user: uuid.UUID) -> str | None:
        """Take one of ``user``'s questions for today: None, or why not."""
        today = datetime.now(UTC).date()
        async with self._kernel.db.sessions() as session, session.begin():
            spent = await session.scalar(
                select(CoachUsage.tokens).where(CoachUsage.day == today, CoachUsage.scope == INSTALLATION)
            )
            if (spent or 0) >= self.tokens_per_day:
                return "the coach's daily budget is spent"
            insert = self._insert(session)(CoachUsage).values(day=today, scope=str(user), questions=1, tokens=0)
            taken = await session.scalar(
                insert.on_conflict_do_update(
                    index_elements=[CoachUsage.day, CoachUsage.scope],
                    set_={"questions": CoachUsage.questions + 1},
                    where=CoachUsage.questions < self.questions_per_member,
                ).returning(CoachUsage.questions)
            )
            if taken is None or taken > self.questions_per_member:
                return "daily question limit reached"
        return None

    async def give_back(self, user: uuid.UUID) -> None:
        """The partner failed: the reserved question was not answered by it."""
        today = datetime.now(UTC).date()
        async with self._kernel.db.sessions() as session, session.begin():
            await session.execute(
                update(CoachUsage)
                .where(CoachUsage.day == today, CoachUsage.scope == str(user), CoachUsage.questions > 0)
                .values(questions=CoachUsage.questions - 1)
            )

    async def spend(self, user: uuid.UUID, tokens: int) -> None:
        today = datetime.now(UTC).date()
        async with self._kernel.db.sessions() as session, session.begin():
            insert = self._insert(session)(CoachUsage).values(day=today, scope=INSTALLATION, questions=1, tokens=tokens)
            await session.execute(
                insert.on_conflict_do_update(
                    index_elements=[CoachUsage.day, CoachUsage.scope],
                    set_={"questions": CoachUsage.questions + 1, "tokens": CoachUsage.tokens + tokens},
                )
            )
            await session.execute(
                update(CoachUsage)
                .where(CoachUsage.day == today, CoachUsage.scope == str(user))
                .values(tokens=CoachUsage.tokens + tokens)
            )

    async def forget_before(self, day: date) -> int:
        """Old days' counts are of no use: the janitor drops them."""
        async with self._kernel.db.sessions() as session, session.begin():
            result = await session.execute(delete(CoachUsage).where(CoachUsage.day < day))
        return int(getattr(result, "rowcount", 0) or 0)


def rule_based(numbers: dict[str, Any], question: str) -> str:
    """Advice from the runner's numbers alone (no partner needed)."""
    load = numbers["load"]
    weeks = [week["distance_m"] for week in numbers["weekly_volume"]]
    parts = []
    if load["ratio"] is None:
        parts.append("There is not enough history yet to judge your load; build up gently for three or four weeks.")
    elif load["ratio"] > 1.5:
        parts.append(
            f"This week's load is {load['ratio']:.1f} times your usual: ease off for a few days to avoid injury."
        )
    elif load["ratio"] > 1.3:
        parts.append(f"Your load is building fast ({load['ratio']:.1f} times usual); keep the next runs easy.")
    elif load["ratio"] < 0.8:
        parts.append(f"You are running less than usual ({load['ratio']:.1f} times); add an easy run if you feel well.")
    else:
        parts.append(f"Your load is in the sweet spot ({load['ratio']:.1f} times your usual).")
    if len(weeks) >= 2 and weeks[-2] > 0 and weeks[-1] > weeks[-2] * 1.1:
        parts.append("You added more than 10 % on last week; hold this volume next week.")
    if numbers["predictions_s"]:
        seconds = numbers["predictions_s"]["10k"]
        parts.append(f"Your recent best suggests about {seconds // 60}:{seconds % 60:02d} for 10 km.")
    if any(word in question.lower() for word in ("pain", "hurt", "injur", "sick")):
        parts.append("For pain or illness, rest and see a professional.")
    return " ".join(parts)


class Coach:
    def __init__(
        self,
        *,
        analytics: AnalyticsService,
        partner: ChatCompletions | None,
        budget: Budget,
        max_tokens: int = 300,
    ) -> None:
        self._analytics = analytics
        self._partner = partner
        self._budget = budget
        self._max_tokens = max_tokens

    async def ask(self, *, user: uuid.UUID, question: str) -> dict[str, Any]:
        numbers = await self._analytics.analytics(user=user, day=datetime.now(UTC).date(), weeks=6)
        reason = "no coaching partner configured" if self._partner is None else await self._budget.reserve(user)
        if reason is None and self._partner is not None:
            partner = self._partner
            messages = [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": f"My numbers: {json.dumps(numbers)}\n\nMy question: {question}"},
            ]
            started = time.monotonic()
            try:
                answer = await partner.complete(messages, max_tokens=self._max_tokens, temperature=0.3)
            except ChatCircuitOpen:
                reason = "the coaching partner is unavailable (circuit open)"
                await self._budget.give_back(user)
            except ChatUnavailable as exc:
                reason = f"the coaching partner failed ({exc})"
                await self._budget.give_back(user)
            else:
                await self._budget.spend(user, answer.tokens or self._max_tokens)
                took_ms = round((time.monotonic() - started) * 1000)
                return {"answer": answer.content[:2000], "source": "partner", "took_ms": took_ms}
        return {"answer": rule_based(numbers, question), "source": "rules", "reason": reason}
