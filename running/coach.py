"""A running coach: answers a member's question about their training from their own
numbers (weekly volume, acute:chronic load, race predictions, the last run).

With an LLM partner configured (any OpenAI-compatible ``/v1/chat/completions``), the
numbers and the question go to it behind a circuit breaker and a daily token budget;
without one, or when the partner fails, is open-circuited or the budget is spent, a
rule-based answer from the same numbers comes back instead, saying why. The coach is
only ever called from its REST route: never from the live socket path.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from common.chat import ChatCircuitOpen, ChatCompletions, ChatUnavailable
from running.analytics import AnalyticsService

SYSTEM_PROMPT = (
    "You are a careful running coach. Answer in at most five sentences, using only the "
    "runner's numbers given as JSON. Never give medical diagnoses; suggest a professional "
    "for pain or illness."
)


@dataclass
class Budget:
    """Tokens the partner may use per UTC day across this replica, and questions per member."""

    tokens_per_day: int
    questions_per_member: int
    _day: str = ""
    _tokens: int = 0
    _questions: dict[uuid.UUID, int] | None = None

    def _roll(self) -> None:
        today = datetime.now(UTC).date().isoformat()
        if today != self._day:
            self._day, self._tokens, self._questions = today, 0, {}

    def allows(self, user: uuid.UUID) -> str | None:
        """None, or why not."""
        self._roll()
        assert self._questions is not None
        if self._questions.get(user, 0) >= self.questions_per_member:
            return "daily question limit reached"
        if self._tokens >= self.tokens_per_day:
            return "the coach's daily budget is spent"
        return None

    def spend(self, user: uuid.UUID, tokens: int) -> None:
        self._roll()
        assert self._questions is not None
        self._questions[user] = self._questions.get(user, 0) + 1
        self._tokens += tokens


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
        reason = "no coaching partner configured" if self._partner is None else self._budget.allows(user)
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
            except ChatUnavailable as exc:
                reason = f"the coaching partner failed ({exc})"
            else:
                self._budget.spend(user, answer.tokens or self._max_tokens)
                took_ms = round((time.monotonic() - started) * 1000)
                return {"answer": answer.content[:2000], "source": "partner", "took_ms": took_ms}
        return {"answer": rule_based(numbers, question), "source": "rules", "reason": reason}
