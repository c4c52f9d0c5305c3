"""The coach partner's stand-in (common.chat_sim): it echoes the runner's question in a
short piece of advice."""

from __future__ import annotations

from typing import Any

from common.chat_sim import ChatSimState


def coach_answer(messages: list[dict[str, Any]]) -> str:
    question = str(messages[-1]["content"]).rpartition("My question:")[2].strip()
    return f"Coach says about '{question}': run easy."


def coach_sim_state() -> ChatSimState:
    return ChatSimState(answer=coach_answer, tokens_per_answer=120)
