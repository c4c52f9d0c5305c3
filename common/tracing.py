"""Distributed tracing (OpenTelemetry) across HTTP and the event bus.

One trace follows a piece of work through every hop: the kernel middleware opens a
server span per request (continuing the caller's W3C ``traceparent``), outgoing httpx and
aiohttp calls carry the context on (OpenTelemetry's instrumentations), and events carry
it through the outbox: the context is captured into the event's envelope when the event
is written in the business transaction (``traceparent``, as CloudEvents' tracing
extension names it), the relay's publish span continues it and puts its own
``traceparent`` in the AMQP headers, and the consumer's span continues that.

Tracing is process-wide and off unless switched on: by settings (:func:`configure`,
exporting over OTLP) or by a test with its own provider (:func:`enable`). While off, no
span is created anywhere, so embedded mode pays nothing for it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode, Tracer
from opentelemetry.trace import SpanKind as SpanKind
from opentelemetry.trace import use_span as use_span
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

    from common.settings import PlatformSettings

log = logging.getLogger(__name__)

TRACEPARENT = "traceparent"
# W3C Trace Context, version 00: anything else from a message or a client is ignored.
_TRACEPARENT = re.compile(r"^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")
_PROPAGATOR = TraceContextTextMapPropagator()
SERVICE_ATTRIBUTE = "smartgym.service"


@dataclass
class _Active:
    provider: TracerProvider
    tracer: Tracer
    instrumented: list[Any]


_active: _Active | None = None


def enabled() -> bool:
    return _active is not None


def enable(provider: TracerProvider) -> None:
    """Trace with ``provider`` from now on (replacing any earlier one); outgoing httpx and
    aiohttp requests carry the context from now on too."""
    global _active
    disable()
    from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    instrumented: list[Any] = []
    for instrumentor in (HTTPXClientInstrumentor(), AioHttpClientInstrumentor()):
        instrumentor.instrument(tracer_provider=provider)
        instrumented.append(instrumentor)
    _active = _Active(provider, provider.get_tracer("smartgym"), instrumented)


def disable() -> None:
    """Stop tracing: spans still queued are flushed by their processor's shutdown."""
    global _active
    if _active is None:
        return
    for instrumentor in _active.instrumented:
        instrumentor.uninstrument()
    _active.provider.shutdown()
    _active = None


def configure(settings: PlatformSettings, *, service: str) -> bool:
    """Switch tracing on from settings, once per process; True when it is on."""
    if _active is not None:
        return True
    if not settings.tracing_on:
        return False
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    # One process runs every service in embedded mode: its spans say which in an attribute.
    name = "smartgym" if settings.embedded else service
    provider = TracerProvider(
        resource=Resource.create({"service.name": name, "service.namespace": settings.bus_namespace}),
        sampler=ParentBased(TraceIdRatioBased(settings.tracing_sample_ratio)),
    )
    provider.add_span_processor(BatchSpanProcessor(_exporter(settings)))
    enable(provider)
    log.info(
        "tracing on",
        extra={"exporter": settings.tracing_exporter, "endpoint": settings.tracing_endpoint or "(OTEL_* default)"},
    )
    return True


def _exporter(settings: PlatformSettings) -> Any:
    endpoint = settings.tracing_endpoint
    if settings.tracing_exporter == "otlp-grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        return GrpcExporter(endpoint=endpoint) if endpoint else GrpcExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

    return HttpExporter(endpoint=endpoint) if endpoint else HttpExporter()


def tracer() -> Tracer:
    return _active.tracer if _active is not None else trace.get_tracer("smartgym.off")


# -- W3C traceparent -------------------------------------------------------------------


def valid_traceparent(value: object) -> str | None:
    return value if isinstance(value, str) and _TRACEPARENT.match(value) else None


def current_traceparent() -> str | None:
    """The ``traceparent`` of the span in progress (None when off or outside any span)."""
    if _active is None:
        return None
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return valid_traceparent(carrier.get(TRACEPARENT))


def context_of(traceparent: str | None) -> otel_context.Context | None:
    """The context a ``traceparent`` continues (None: start a new trace)."""
    if traceparent is None:
        return None
    return _PROPAGATOR.extract({TRACEPARENT: traceparent})


def context_from_headers(headers: Mapping[str, str]) -> otel_context.Context:
    return _PROPAGATOR.extract(headers)


def traceparent_of(span: Span) -> str | None:
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
    return valid_traceparent(carrier.get(TRACEPARENT))


@contextmanager
def span(
    name: str,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    parent: str | None = None,
    attributes: Mapping[str, Any] | None = None,
) -> Iterator[Span | None]:
    """A span around the block when tracing is on (continuing ``parent`` when given,
    else the current context); nothing at all when it is off."""
    if _active is None:
        yield None
        return
    context = context_of(parent) if parent else None
    with _active.tracer.start_as_current_span(
        name, context=context, kind=kind, attributes=dict(attributes or {})
    ) as current:
        yield current


def mark_error(current: Span | None, reason: str) -> None:
    if current is not None:
        current.set_status(Status(StatusCode.ERROR, reason))
