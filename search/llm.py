"""The LLM partner: keyword and tag extraction over an OpenAI-compatible
``/v1/chat/completions`` API (OpenAI, Azure, vLLM, Ollama … speak it). Cold path only.

The wire, retries and circuit breaker are the kernel's chat client (common.chat); here
each call is counted against a daily token budget kept in the database (shared by
replicas).
Whatever the model answers is validated: only known tags, a few short keywords.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from datetime import UTC, datetime

import httpx
from sqlalchemy import Table, select

from common.breaker import AsyncCircuitBreaker
from common.chat import ChatAnswer, ChatCompletions, ChatUnavailable
from common.db import Database
from search.branches import upsert
from search.keywords import MAX_KEYWORDS, Extraction
from search.lexicon import lexicon
from search.models import LlmUsage
from search.settings import SearchSettings
from search.text import has_control_characters

log = logging.getLogger(__name__)

SYSTEM_PROMPT = (
    "You label gyms for a search engine. From the gym's description and its members' reviews "
    "(Korean or English), answer with one JSON object: "
    '{"tags": [...], "keywords": [...]}. "tags" only from this list, and only when most reviews '
    'agree: {tags}. "keywords": at most 10 short words or phrases (Korean or English) members '
    "would search for. No other text."
)
_KEYWORD = re.compile(r"^[\w\s'&+-]{1,30}$")


class PartnerUnavailable(Exception):
    """The partner could not give an answer now (outage, open circuit, budget, garbage)."""


class BudgetSpent(PartnerUnavailable):
    pass


class LlmClient:
    def __init__(
        self,
        settings: SearchSettings,
        *,
        database: Database,
        breaker: AsyncCircuitBreaker,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not settings.search_llm_url:
            raise ValueError("no LLM partner configured")
        self._settings = settings
        self._database = database
        self.breaker = breaker
        self._chat = ChatCompletions(
            base_url=settings.search_llm_url,
            api_key=settings.search_llm_api_key.get_secret_value() if settings.search_llm_api_key else None,
            model=settings.search_llm_model,
            breaker=breaker,
            timeout_s=settings.search_llm_timeout_s,
            max_attempts=settings.search_llm_max_attempts,
            retry_base_s=settings.search_llm_retry_base_s,
            transport=transport,
        )

    async def aclose(self) -> None:
        await self._chat.aclose()

    async def spent_today(self) -> int:
        async with self._database.sessions() as session:
            used = await session.scalar(select(LlmUsage.tokens).where(LlmUsage.day == _today()))
        return int(used or 0)

    async def _record(self, tokens: int) -> None:
        table = LlmUsage.__table__
        assert isinstance(table, Table)
        async with self._database.transaction() as session:
            await upsert(
                session,
                table,
                {"day": _today(), "tokens": tokens, "calls": 1},
                keys=["day"],
                update={"tokens": table.c.tokens + tokens, "calls": table.c.calls + 1},
            )

    async def extract(self, *, name: str, description: str, reviews: Sequence[str]) -> Extraction:
        if await self.spent_today() >= self._settings.search_llm_daily_token_budget:
            raise BudgetSpent("the LLM partner's daily token budget is spent")
        tags = sorted(lexicon().attributes)
        messages = [
            {"role": "system", "content": SYSTEM_PROMPT.replace("{tags}", ", ".join(tags))},
            {
                "role": "user",
                "content": json.dumps(
                    {"name": name, "description": description, "reviews": list(reviews)}, ensure_ascii=False
                ),
            },
        ]
        try:
            answer = await self._chat.complete(messages, temperature=0, json_object=True)
        except ChatUnavailable as exc:
            raise PartnerUnavailable(f"LLM partner: {exc}") from exc
        await self._record(answer.tokens)
        return _validated(answer)


def _validated(answer: ChatAnswer) -> Extraction:
    tokens = answer.tokens
    try:
        parsed = json.loads(answer.content)
    except ValueError as exc:
        raise PartnerUnavailable("LLM partner's answer is not the JSON object asked for") from exc
    if not isinstance(parsed, dict):
        raise PartnerUnavailable("LLM partner's answer is not a JSON object")
    known = lexicon().attributes
    tags = [tag for tag in parsed.get("tags", []) if isinstance(tag, str) and tag in known]
    keywords: list[str] = []
    for keyword in parsed.get("keywords", []):
        if isinstance(keyword, str) and _KEYWORD.match(keyword) and not has_control_characters(keyword):
            keywords.append(keyword.strip().lower())
    return Extraction(
        tags=sorted(set(tags)), keywords=list(dict.fromkeys(keywords))[:MAX_KEYWORDS], tokens=tokens, source="llm"
    )


def _today() -> str:
    return datetime.now(UTC).date().isoformat()
