"""The LLM partner's stand-in for search (common.chat_sim), answering with the offline
extractor's result so its answers are deterministic."""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI

from common.chat_sim import LOCAL_KEY, ChatSimState
from common.chat_sim import create_app as create_chat_app
from search.keywords import extract_offline

__all__ = ["LOCAL_KEY", "create_app", "extraction_answer", "llm_sim_state"]


def extraction_answer(messages: list[dict[str, Any]]) -> str:
    user = next((str(message["content"]) for message in messages if message.get("role") == "user"), "")
    try:
        payload = json.loads(user)
    except ValueError:
        payload = {"description": user, "reviews": []}
    extraction = extract_offline(
        description=str(payload.get("description", "")), reviews=[str(text) for text in payload.get("reviews", [])]
    )
    return json.dumps({"tags": extraction.tags, "keywords": extraction.keywords}, ensure_ascii=False)


def llm_sim_state(**fields: Any) -> ChatSimState:
    return ChatSimState(answer=extraction_answer, **fields)


def create_app(state: ChatSimState | None = None) -> FastAPI:
    return create_chat_app(state or llm_sim_state())
