"""running's domain errors; the REST and live layers turn them into 404/403/409/429 or a
close reason."""

from __future__ import annotations


class NotFound(Exception):
    pass


class Forbidden(Exception):
    pass


class Conflict(Exception):
    pass


class TooMany(Exception):
    """The member has tried too often today (guessing is what this stops)."""
