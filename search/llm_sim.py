"""A local stand-in for the LLM partner speaking OpenAI's chat-completions wire format,
for tests and embedded mode. It answers with the offline extractor's result, so its
answers are deterministic; failures can be scripted."""

from __future__ import annotations

import json
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from search.keywords import extract_offline

LOCAL_KEY = "local-llm-key"


@dataclass
class LlmSimState:
    api_key: str = LOCAL_KEY
    # Scripted answers before the real one: (HTTP status, Retry-After or None).
    failures: deque[tuple[int, float | None]] = field(default_factory=deque)
    requests: list[dict[str, Any]] = field(default_factory=list)
    # Answer this instead of the extraction (to test validation).
    raw_content: str | None = None


def _error(status: int, message: str, kind: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        {"error": {"message": message, "type": kind, "code": None}}, status_code=status, headers=headers
    )


def create_app(state: LlmSimState | None = None) -> FastAPI:
    state = state or LlmSimState()
    app = FastAPI(title="LLM partner stand-in")
    app.state.sim = state

    @app.post("/v1/chat/completions")
    async def completions(request: Request) -> JSONResponse:
        if request.headers.get("authorization") != f"Bearer {state.api_key}":
            return _error(401, "Incorrect API key provided", "invalid_request_error")
        try:
            body = await request.json()
            messages = body["messages"]
            model = str(body["model"])
            user = next(message["content"] for message in messages if message["role"] == "user")
        except (ValueError, KeyError, TypeError, StopIteration):
            return _error(400, "messages and model are required", "invalid_request_error")
        state.requests.append(body)
        if state.failures:
            status, retry_after = state.failures.popleft()
            headers = {"retry-after": f"{retry_after:g}"} if retry_after is not None else None
            return _error(status, "scripted failure", "server_error" if status >= 500 else "rate_limit", headers)
        try:
            payload = json.loads(user)
        except ValueError:
            payload = {"description": str(user), "reviews": []}
        extraction = extract_offline(
            description=str(payload.get("description", "")), reviews=[str(text) for text in payload.get("reviews", [])]
        )
        content = state.raw_content or json.dumps(
            {"tags": extraction.tags, "keywords": extraction.keywords}, ensure_ascii=False
        )
        prompt_tokens = sum(len(str(message.get("content", ""))) for message in messages) // 3
        completion_tokens = len(content) // 3
        return JSONResponse(
            {
                "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
            }
        )

    return app
