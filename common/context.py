"""The correlation id that follows one piece of work across HTTP requests and events."""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar

_correlation_id: ContextVar[str | None] = ContextVar("smartgym_correlation_id", default=None)

# Ids arrive from clients and from the broker: accept only short, printable tokens so a
# header can never inject log lines or blow up label cardinality.
_VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")

REQUEST_ID_HEADER = "x-request-id"


def new_correlation_id() -> str:
    return uuid.uuid4().hex


def current_correlation_id() -> str | None:
    return _correlation_id.get()


def correlation_id_or_new() -> str:
    return _correlation_id.get() or new_correlation_id()


def sanitize_correlation_id(candidate: str | None) -> str:
    """The candidate when it is a safe id, otherwise a fresh one."""
    if candidate and _VALID_ID.match(candidate):
        return candidate
    return new_correlation_id()


def bind_correlation_id(value: str) -> object:
    """Bind ``value`` for the current task; returns a token for :func:`reset_correlation_id`."""
    return _correlation_id.set(value)


def reset_correlation_id(token: object) -> None:
    _correlation_id.reset(token)  # type: ignore[arg-type]
