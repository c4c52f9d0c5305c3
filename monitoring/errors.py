"""What monitoring's domain refuses, for its routes to answer as 404 and 409."""

from __future__ import annotations


class NotFound(Exception):
    pass


class Conflict(Exception):
    pass
