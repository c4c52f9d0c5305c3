"""A client of an OpenAI-compatible ``/v1/chat/completions`` API (OpenAI, Azure, vLLM,
Ollama … speak it): the one way a service asks an LLM partner.

Every call runs under the caller's circuit breaker (429 and 5xx count as failures, so an
outage costs a fast refusal), is retried on 429/5xx/transport errors with jittered
back-off that honours ``Retry-After``, and ends either in an answer or in
:class:`ChatUnavailable` with the reason in words. What the answer means, and how many
tokens a service may spend, is the caller's business.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from common.breaker import AsyncCircuitBreaker, CircuitOpenError

MAX_RETRY_WAIT_S = 60.0


class ChatUnavailable(Exception):
    """The partner gave no usable answer now (outage, refusal, garbage)."""


class ChatCircuitOpen(ChatUnavailable):
    """The breaker is open: the partner was not even asked."""


@dataclass(frozen=True)
class ChatAnswer:
    content: str
    tokens: int


class ChatCompletions:
    def __init__(
        self,
        *,
        base_url: str,
        api_key: str | None,
        model: str,
        breaker: AsyncCircuitBreaker,
        timeout_s: float = 20.0,
        max_attempts: int = 1,
        retry_base_s: float = 0.5,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        headers = {"content-type": "application/json"}
        if api_key:
            headers["authorization"] = f"Bearer {api_key}"
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers=headers,
            timeout=httpx.Timeout(timeout_s, connect=min(5.0, timeout_s)),
            transport=transport,
        )
        self.model = model
        self.breaker = breaker
        self._max_attempts = max_attempts
        self._retry_base_s = retry_base_s

    async def aclose(self) -> None:
        await self._http.aclose()

    async def complete(
        self,
        messages: Sequence[dict[str, str]],
        *,
        max_tokens: int | None = None,
        temperature: float = 0.0,
        json_object: bool = False,
    ) -> ChatAnswer:
        body: dict[str, Any] = {"model": self.model, "messages": list(messages), "temperature": temperature}
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        if json_object:
            body["response_format"] = {"type": "json_object"}
        document = await self._post_with_retries(body)
        try:
            content = str(document["choices"][0]["message"]["content"]).strip()
            usage = document.get("usage") or {}
            tokens = int(usage.get("total_tokens") or 0) if isinstance(usage, dict) else 0
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise ChatUnavailable("malformed answer") from exc
        if not content:
            raise ChatUnavailable("empty answer")
        return ChatAnswer(content, tokens)

    async def _post_with_retries(self, body: dict[str, Any]) -> dict[str, Any]:
        attempts = self._max_attempts
        for attempt in range(1, attempts + 1):
            try:
                response = await self.breaker.call(
                    lambda: self._http.post("/v1/chat/completions", json=body),
                    is_failure=_retryable,
                )
            except CircuitOpenError as exc:
                raise ChatCircuitOpen(str(exc)) from exc
            except httpx.HTTPError as exc:
                if attempt == attempts:
                    raise ChatUnavailable(f"unreachable: {type(exc).__name__}") from exc
                await asyncio.sleep(self._backoff(attempt, None))
                continue
            if response.status_code == 200:
                try:
                    document: dict[str, Any] = response.json()
                except ValueError as exc:
                    raise ChatUnavailable("an answer that is not JSON") from exc
                return document
            if not _retryable(response) or attempt == attempts:
                raise ChatUnavailable(f"HTTP {response.status_code}")
            await asyncio.sleep(self._backoff(attempt, response.headers.get("retry-after")))
        raise ChatUnavailable("no attempts left")

    def _backoff(self, attempt: int, retry_after: str | None) -> float:
        if retry_after is not None:
            try:
                return min(MAX_RETRY_WAIT_S, max(0.0, float(retry_after)))
            except ValueError:
                pass
        base = self._retry_base_s * 2.0 ** (attempt - 1)
        return min(30.0, base * (0.5 + random.random()))


def _retryable(response: httpx.Response) -> bool:
    return response.status_code == 429 or response.status_code >= 500
