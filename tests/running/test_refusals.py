"""Every refusal running's domain can raise has an HTTP status: a new kind of refusal
without one would reach a member as a 500."""

from __future__ import annotations

import inspect

from running import errors
from running.api import REFUSAL_STATUS
from running.sync import StravaUnavailable


def test_every_domain_refusal_has_a_status() -> None:
    refusals = {
        kind
        for _, kind in inspect.getmembers(errors, inspect.isclass)
        if issubclass(kind, Exception) and kind.__module__ == errors.__name__
    }
    assert refusals, "running.errors declares the domain's refusals"
    assert refusals | {StravaUnavailable} <= set(REFUSAL_STATUS)
    assert all(400 <= code < 600 for code in REFUSAL_STATUS.values())
