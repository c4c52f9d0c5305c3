"""Checks of our own for schemathesis (loaded through SCHEMATHESIS_HOOKS)."""

from __future__ import annotations

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
