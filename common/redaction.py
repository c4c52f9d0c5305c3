"""Secrets never reach a log line.

Browsers cannot set headers on a WebSocket, so live sockets carry the bearer token in
the query (``?access_token=``), and a shared link's token is a path segment
(``/ws/share/{token}``). uvicorn logs WebSocket handshakes with path and query, access
logs carry paths, and an exception message may quote a URL. One filter, installed on
the root handlers and on the third-party loggers that keep their own handlers, rewrites
every record before it is formatted: secret query parameters, share-link tokens, bearer
credentials and anything shaped like a JWT become ``[redacted]``.
"""

from __future__ import annotations

import logging
import re
from typing import Any

REDACTED = "[redacted]"
SECRET_PARAMS = (
    "access_token",
    "refresh_token",
    "id_token",
    "token",
    "reset_token",
    "code",
    "password",
    "secret",
    "signature",
    "api_key",
    "key",
)
_QUERY = re.compile(r"(?i)([?&;](?:" + "|".join(SECRET_PARAMS) + r"))=[^&\s\"'#]*")
_SHARE = re.compile(r"(/share/)[^/?\s\"'#]+")
_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+")
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*")
# Loggers that may have handlers of their own (uvicorn's default log config) and so
# need the filter on the logger, not only on ours.
THIRD_PARTY_LOGGERS = ("uvicorn", "uvicorn.access", "uvicorn.error", "websockets", "websockets.server", "aiohttp")


def redact(text: str) -> str:
    if not text:
        return text
    text = _QUERY.sub(rf"\1={REDACTED}", text)
    text = _SHARE.sub(rf"\1{REDACTED}", text)
    text = _BEARER.sub(rf"\1{REDACTED}", text)
    return _JWT.sub(REDACTED, text)


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, tuple):
        return tuple(_redact_value(item) for item in value)
    return value


_RESERVED = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class RedactSecrets(logging.Filter):
    """Rewrites the record's message (arguments merged in) and its string extras."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_redacted", False):
            return True
        self._message(record)
        for key, value in list(record.__dict__.items()):
            if key not in _RESERVED and not key.startswith("_"):
                record.__dict__[key] = _redact_value(value)
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        record._redacted = True
        return True

    @staticmethod
    def _message(record: logging.LogRecord) -> None:
        # Arguments are redacted one by one and kept, because formatters such as
        # uvicorn's access formatter unpack them; if a secret only shows once the
        # message is put together, the message is merged and redacted whole.
        msg = record.msg if isinstance(record.msg, str) else str(record.msg)
        if isinstance(record.args, tuple) and record.args:
            args = tuple(_redact_value(item) for item in record.args)
            try:
                merged = msg % args
            except (TypeError, ValueError):
                record.msg, record.args = redact(f"{msg} {args}"), None
                return
            cleaned = redact(merged)
            if cleaned == merged:
                record.msg, record.args = redact(msg), args
            else:
                record.msg, record.args = cleaned, None
                record.__dict__.pop("color_message", None)
            return
        try:
            message = record.getMessage()
        except (TypeError, ValueError, KeyError):
            message = f"{msg} {record.args}"
        record.msg, record.args = redact(message), None


_FILTER = RedactSecrets()


def install_redaction(*handlers: logging.Handler) -> None:
    """Put the filter on ``handlers`` (default: the root logger's) and on the third-party
    loggers; installing twice is harmless."""
    for handler in handlers or tuple(logging.getLogger().handlers):
        if _FILTER not in handler.filters:
            handler.addFilter(_FILTER)
    for name in THIRD_PARTY_LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
        for handler in logger.handlers:
            if _FILTER not in handler.filters:
                handler.addFilter(_FILTER)
