"""A local stand-in for an OpenAI-compatible chat-completions endpoint (the coach's
partner), speaking its request and response format. Scriptable: failures for the next
requests, a delay; every request is recorded."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse


@dataclass
class ChatSimState:
    api_key: str = "sim-key"
    failures: list[int] = field(default_factory=list)
    tokens_per_answer: int = 120
    requests: list[dict[str, Any]] = field(default_factory=list)


def create_app(state: ChatSimState) -> FastAPI:
    app = FastAPI(title="chat-completions stand-in")

    @app.post("/v1/chat/completions")
    async def complete(request: Request) -> JSONResponse:
        if request.headers.get("authorization") != f"Bearer {state.api_key}":
            return JSONResponse({"error": {"message": "Incorrect API key provided", "type": "invalid_request_error",
                                           "code": "invalid_api_key"}}, 401)  # fmt: skip
        body = await request.json()
        state.requests.append(body)
        if state.failures:
            status = state.failures.pop(0)
            return JSONResponse({"error": {"message": "The server had an error", "type": "server_error"}}, status)
        question = body["messages"][-1]["content"].rpartition("My question:")[2].strip()
        return JSONResponse(
            {
                "id": f"chatcmpl-{len(state.requests)}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", "sim"),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": f"Coach says about '{question}': run easy."},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": state.tokens_per_answer},
            }
        )

    return app
