"""Checks of our own for schemathesis (loaded through SCHEMATHESIS_HOOKS)."""

from __future__ import annotations

import json
import os
from typing import Any

import schemathesis


@schemathesis.check
def no_server_error(ctx: Any, response: Any, case: Any) -> None:
    """No 5xx, except a 503 that says when to come back: the documented answer when a
    partner or a co-located engine is away (the kiosk falls back, the app retries)."""
    status = response.status_code
    if status < 500:
        return
    if status == 503 and any(name.lower() == "retry-after" for name in response.headers):
        return
    raise AssertionError(f"server error {status}: {response.text[:300]}")


# Several callers in one run (``fuzzing.fuzz`` with more than one): each operation's
# requests take the callers in turn. Building an operation's strategies is most of a
# short run's time, so one run for three callers costs little more than one for one.
CALLERS: list[dict[str, str]] = json.loads(os.environ.get("SMARTGYM_FUZZ_CALLERS", "[]"))
_turns: dict[str, int] = {}


@schemathesis.hook
def before_call(ctx: Any, case: Any, **kwargs: Any) -> None:
    if not CALLERS:
        return
    label = case.operation.label
    turn = _turns.get(label, 0)
    _turns[label] = turn + 1
    headers = case.headers
    for name in [name for name in headers if name.lower() == "authorization"]:
        del headers[name]
    headers.update(CALLERS[turn % len(CALLERS)])
