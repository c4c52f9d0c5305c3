"""A local stand-in for an OpenAI-compatible chat-completions partner, speaking its
request, answer and error format, for tests and for trying a partner path by hand. What
it answers is the caller's (``answer``); failures can be scripted; every request is
recorded."""

from __future__ import annotations

import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

LOCAL_KEY = "local-llm-key"
Messages = list[dict[str, Any]]


def _no_answer(_messages: Messages) -> str:
    return "OK"


@dataclass
class ChatSimState:
    api_key: str = LOCAL_KEY
    # The assistant's text for these messages.
    answer: Callable[[Messages], str] = _no_answer
    # Answer this instead (to test how a caller validates what it gets).
    raw_content: str | None = None
    # Scripted answers before the real ones: (HTTP status, Retry-After or None).
    failures: deque[tuple[int, float | None]] = field(default_factory=deque)
    # Tokens reported per answer; None: about one per three characters.
    tokens_per_answer: int | None = None
    requests: list[dict[str, Any]] = field(default_factory=list)


def _error(status: int, message: str, kind: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        {"error": {"message": message, "type": kind, "code": None}}, status_code=status, headers=headers
    )


def create_app(state: ChatSimState) -> FastAPI:
    app = FastAPI(title="chat-completions partner stand-in")
    app.state.sim = state

    @app.post("/v1/chat/completions")
    async def completions(request: Request) -> JSONResponse:
        if request.headers.get("authorization") != f"Bearer {state.api_key}":
            return _error(401, "Incorrect API key provided", "invalid_request_error")
        try:
            body = await request.json()
            messages: Messages = list(body["messages"])
            model = str(body["model"])
            if not all(isinstance(message, dict) and "content" in message for message in messages):
                raise TypeError("a message without content")
        except (ValueError, KeyError, TypeError):
            return _error(400, "messages and model are required", "invalid_request_error")
        state.requests.append(body)
        if state.failures:
            status, retry_after = state.failures.popleft()
            headers = {"retry-after": f"{retry_after:g}"} if retry_after is not None else None
            return _error(status, "scripted failure", "server_error" if status >= 500 else "rate_limit", headers)
        content = state.raw_content if state.raw_content is not None else state.answer(messages)
        prompt_tokens = sum(len(str(message.get("content", ""))) for message in messages) // 3
        completion_tokens = len(content) // 3
        total = state.tokens_per_answer if state.tokens_per_answer is not None else prompt_tokens + completion_tokens
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
                    "total_tokens": total,
                },
            }
        )

    return app
