"""The LLM partner: keyword and tag extraction over an OpenAI-compatible
``/v1/chat/completions`` API (OpenAI, Azure, vLLM, Ollama … speak it). Cold path only.

Each call is retried on 429/5xx/timeouts with back-off (honouring ``Retry-After``),
runs under a circuit breaker so an outage costs nothing but a fast refusal, and is
counted against a daily token budget kept in the database (shared by replicas).
Whatever the model answers is validated: only known tags, a few short keywords.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import Table, select

from common.breaker import AsyncCircuitBreaker, CircuitOpenError
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
        headers = {"content-type": "application/json"}
        if settings.search_llm_api_key is not None:
            headers["authorization"] = f"Bearer {settings.search_llm_api_key.get_secret_value()}"
        self._client = httpx.AsyncClient(
            base_url=settings.search_llm_url.rstrip("/"),
            headers=headers,
            timeout=httpx.Timeout(settings.search_llm_timeout_s, connect=min(5.0, settings.search_llm_timeout_s)),
            transport=transport,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

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
        body = {
            "model": self._settings.search_llm_model,
            "temperature": 0,
            "response_format": {"type": "json_object"},
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPT.replace("{tags}", ", ".join(tags))},
                {
                    "role": "user",
                    "content": json.dumps(
                        {"name": name, "description": description, "reviews": list(reviews)}, ensure_ascii=False
                    ),
                },
            ],
        }
        answer = await self._post_with_retries(body)
        usage = answer.get("usage") or {}
        tokens = int(usage.get("total_tokens") or 0) if isinstance(usage, dict) else 0
        await self._record(tokens)
        return _validated(answer, tokens)

    async def _post_with_retries(self, body: dict[str, Any]) -> dict[str, Any]:
        attempts = self._settings.search_llm_max_attempts
        for attempt in range(1, attempts + 1):
            try:
                response = await self.breaker.call(
                    lambda: self._client.post("/v1/chat/completions", json=body),
                    is_failure=lambda response: response.status_code == 429 or response.status_code >= 500,
                )
            except CircuitOpenError as exc:
                raise PartnerUnavailable(str(exc)) from exc
            except httpx.HTTPError as exc:
                if attempt == attempts:
                    raise PartnerUnavailable(f"LLM partner unreachable: {type(exc).__name__}") from exc
                await asyncio.sleep(self._backoff(attempt, None))
                continue
            if response.status_code == 200:
                try:
                    document: dict[str, Any] = response.json()
                except ValueError as exc:
                    raise PartnerUnavailable("LLM partner answered something that is not JSON") from exc
                return document
            retryable = response.status_code == 429 or response.status_code >= 500
            if not retryable or attempt == attempts:
                raise PartnerUnavailable(f"LLM partner refused: HTTP {response.status_code}")
            await asyncio.sleep(self._backoff(attempt, response.headers.get("retry-after")))
        raise PartnerUnavailable("LLM partner: no attempts left")

    def _backoff(self, attempt: int, retry_after: str | None) -> float:
        if retry_after is not None:
            try:
                return float(min(60.0, max(0.0, float(retry_after))))
            except ValueError:
                pass
        base: float = self._settings.search_llm_retry_base_s * 2.0 ** (attempt - 1)
        return min(30.0, base * (0.5 + random.random()))


def _validated(answer: dict[str, Any], tokens: int) -> Extraction:
    try:
        content = answer["choices"][0]["message"]["content"]
        parsed = json.loads(content)
    except (KeyError, IndexError, TypeError, ValueError) as exc:
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
