"""Metrics, JSON logs and the per-request middleware shared by every service."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from common import tracing
from common.context import (
    REQUEST_ID_HEADER,
    bind_correlation_id,
    current_correlation_id,
    reset_correlation_id,
    sanitize_correlation_id,
)
from common.redaction import install_redaction

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

BREAKER_STATE_VALUE = {"closed": 0, "half-open": 1, "open": 2}


class Metrics:
    """Every metric of one process, in a registry of its own (no global state).

    In embedded mode several services share a process, so every family carries a
    ``service`` label (or one that implies it) and one registry serves them all.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.http_latency = Histogram(
            "smartgym_http_request_duration_seconds",
            "HTTP request latency by route template.",
            ["service", "method", "route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.published = Counter(
            "smartgym_events_published_total",
            "Events handed to the bus and confirmed.",
            ["event"],
            registry=r,
        )
        self.publish_seconds = Histogram(
            "smartgym_event_publish_batch_seconds",
            "Time for the bus to confirm one batch.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.consumed = Counter(
            "smartgym_events_consumed_total",
            "Events delivered to handlers, by outcome.",
            ["event", "outcome"],
            registry=r,
        )
        self.handle_seconds = Histogram(
            "smartgym_event_handle_seconds",
            "Handler time per event.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.parked = Counter(
            "smartgym_events_parked_total",
            "Messages moved to a parking lot.",
            ["service"],
            registry=r,
        )
        self.duplicates = Counter(
            "smartgym_events_duplicate_total",
            "Redelivered events recognised and skipped.",
            ["consumer"],
            registry=r,
        )
        self.outbox_backlog = Gauge(
            "smartgym_outbox_backlog",
            "Events written but not yet confirmed by the bus.",
            ["service"],
            registry=r,
        )
        self.retention_swept = Counter(
            "smartgym_retention_swept_rows",
            "Rows deleted by the kernel's retention sweeps (published outbox rows, consumed event ids).",
            ["service", "table"],
            registry=r,
        )
        self.breaker_state = Gauge(
            "smartgym_circuit_breaker_state",
            "0 closed, 1 half-open, 2 open.",
            ["breaker"],
            registry=r,
        )
        self.rate_limited = Counter(
            "smartgym_rate_limited_total",
            "Requests refused with 429, by route service.",
            ["route"],
            registry=r,
        )
        self.breaker_rejections = Counter(
            "smartgym_circuit_breaker_rejections_total",
            "Calls refused without a network attempt.",
            ["breaker"],
            registry=r,
        )


# -- logging ---------------------------------------------------------------------------

_RESERVED = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the correlation id and any ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        correlation_id = current_correlation_id()
        if correlation_id:
            entry["correlation_id"] = correlation_id
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class ConsoleFormatter(logging.Formatter):
    """One readable line per event for a developer's terminal: time, level, where, the
    message, then any ``extra`` fields as ``key=value``; coloured when ``colour``."""

    COLOURS = {
        "DEBUG": "\033[2m",
        "INFO": "\033[32m",
        "WARNING": "\033[33m",
        "ERROR": "\033[31m",
        "CRITICAL": "\033[1;31m",
    }
    DIM, RESET = "\033[2m", "\033[0m"
    # Fields that repeat what the line already says, or only matter to machines.
    QUIET = frozenset({"color_message", "request_id"})

    def __init__(self, *, colour: bool) -> None:
        super().__init__()
        self.colour = colour

    def format(self, record: logging.LogRecord) -> str:
        when = time.strftime("%H:%M:%S", time.localtime(record.created))
        level = record.levelname
        fields = [
            f"{key}={value}"
            for key, value in record.__dict__.items()
            if key not in _RESERVED and key not in self.QUIET and not key.startswith("_")
        ]
        correlation_id = current_correlation_id()
        if correlation_id:
            fields.append(f"cid={correlation_id[:8]}")
        tail = " ".join(fields)
        if self.colour:
            level = f"{self.COLOURS.get(level, '')}{level:<7}{self.RESET}"
            where = f"{self.DIM}{record.name}{self.RESET}"
            tail = f"{self.DIM}{tail}{self.RESET}" if tail else ""
        else:
            level, where = f"{level:<7}", record.name
        line = f"{when} {level} {where}: {record.getMessage()}"
        if tail:
            line = f"{line}  {tail}"
        if record.exc_info:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        return line


def configure_logging(level: str = "INFO", *, json_lines: bool = True) -> None:
    """JSON lines (production, collectors) or, with ``json_lines=False``, the readable
    console format, coloured when stderr is a terminal."""
    handler = logging.StreamHandler(sys.stderr)
    if json_lines:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(ConsoleFormatter(colour=sys.stderr.isatty()))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Tokens in WebSocket queries and shared-link paths must not reach any line.
    install_redaction(handler)
    # uvicorn's own access log would duplicate ours.
    logging.getLogger("uvicorn.access").disabled = True
    if not json_lines:
        # A person reads this: the launcher already says which service listens where, and
        # per-request client lines and migration internals drown the events that matter.
        for chatty in ("uvicorn.error", "httpx", "alembic"):
            logging.getLogger(chatty).setLevel(max(logging.WARNING, logging.getLogger(chatty).level))


# -- middleware ------------------------------------------------------------------------


access_log = logging.getLogger("smartgym.access")
# Probes and scrapes: many a minute per pod, each a trace of one span that nobody reads.
UNTRACED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


class KernelMiddleware:
    """Request id, body-size limit, latency histogram and one access-log line per request.

    Pure ASGI rather than BaseHTTPMiddleware: it adds no task or memory stream per request.
    """

    def __init__(self, app: ASGIApp, *, service: str, metrics: Metrics, max_body_bytes: int) -> None:
        self.app = app
        self.service = service
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        request_id = sanitize_correlation_id(_header(scope, REQUEST_ID_HEADER))
        token = bind_correlation_id(request_id)
        try:
            if scope["type"] == "websocket":
                await self.app(scope, receive, send)
                return
            if tracing.enabled() and scope["path"] not in UNTRACED_PATHS:
                await self._traced_http(scope, receive, send, request_id)
                return
            await self._http(scope, receive, send, request_id)
        finally:
            reset_correlation_id(token)

    async def _traced_http(self, scope: Scope, receive: Receive, send: Send, request_id: str) -> None:
        # The route template names the span (the raw path may carry a token or an id).
        traceparent = _header(scope, "traceparent")
        parent = tracing.context_from_headers({"traceparent": traceparent}) if traceparent else None
        status_seen = 500

        async def observed_send(message: Message) -> None:
            nonlocal status_seen
            if message["type"] == "http.response.start":
                status_seen = message["status"]
            await send(message)

        span = tracing.tracer().start_span(
            f"{scope['method']} {self.service}",
            context=parent,
            kind=tracing.SpanKind.SERVER,
            attributes={
                tracing.SERVICE_ATTRIBUTE: self.service,
                "http.request.method": scope["method"],
                "smartgym.request_id": request_id,
            },
        )
        try:
            with tracing.use_span(span):
                await self._http(scope, receive, observed_send, request_id)
        finally:
            template = getattr(scope.get("route"), "path", None)
            if template:
                span.update_name(f"{scope['method']} {template}")
            span.set_attributes({"http.route": template or "<unmatched>", "http.response.status_code": status_seen})
            if status_seen >= 500:
                tracing.mark_error(span, f"HTTP {status_seen}")
            span.end()

    async def _http(self, scope: Scope, receive: Receive, send: Send, request_id: str) -> None:
        started = time.perf_counter()
        status = 500
        response_started = False
        limit = self.max_body_bytes
        declared = _header(scope, "content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            status = 413 if declared.isdigit() else 400
            await _send_json(
                send, status, {"detail": _too_large(limit) if status == 413 else "bad Content-Length"}, request_id
            )
            self._record(scope, status, started, request_id)
            return
        received = 0
        answered = False

        async def limited_receive() -> Message:
            # Past the limit we answer 413 ourselves and tell the app the client left:
            # frameworks turn exceptions raised here into their own 400s.
            nonlocal received, answered, status
            if answered:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit and not response_started:
                    answered, status = True, 413
                    await _send_json(send, 413, {"detail": _too_large(limit)}, request_id)
                    return {"type": "http.disconnect"}
            return message

        async def tagged_send(message: Message) -> None:
            nonlocal status, response_started
            if answered:
                return  # the 413 already went out; whatever the app says now is moot
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (REQUEST_ID_HEADER.encode(), request_id.encode())]
            await send(message)

        try:
            await self.app(scope, limited_receive, tagged_send)
        finally:
            self._record(scope, status, started, request_id)

    def _record(self, scope: Scope, status: int, started: float, request_id: str) -> None:
        elapsed = time.perf_counter() - started
        route = scope.get("route")
        template = getattr(route, "path", None) or "<unmatched>"
        self.metrics.http_latency.labels(self.service, scope["method"], template, str(status)).observe(elapsed)
        access_log.info(
            "%s %s %d",
            scope["method"],
            scope["path"],
            status,
            extra={
                "service": self.service,
                "status": status,
                "duration_ms": round(elapsed * 1000, 2),
                "request_id": request_id,
            },
        )


def _too_large(limit: int) -> str:
    return f"request body exceeds {limit} bytes"


def _header(scope: Scope, name: str) -> str | None:
    wanted = name.encode()
    for key, value in scope.get("headers", ()):
        if key.lower() == wanted:
            decoded: str = value.decode("latin-1")
            return decoded
    return None


async def _send_json(send: Send, status: int, body: dict[str, Any], request_id: str) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                (REQUEST_ID_HEADER.encode(), request_id.encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
