"""One trace follows a face entry: the kiosk's request through the gateway, access's
decision, facemodel's identification over the Unix socket, the AccessDenied event through
access's outbox and relay, and notification consuming it. Spans are collected in memory."""

from __future__ import annotations

import uuid

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from access.app import create_app as create_access_app
from common import tracing
from common.migrations import upgrade
from common.security import Role
from gateway.app import create_app as create_gateway_app
from gateway.settings import GatewaySettings
from notification.app import create_app as create_notification_app
from notification.settings import NotificationSettings
from tests.access.conftest import BRANCH, Door
from tests.support import tokens
from tests.support.apps import asgi_client, serving
from tests.support.waiting import eventually


@pytest.fixture
def spans():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.enable(provider)
    yield exporter
    tracing.disable()


def kiosk() -> dict[str, str]:
    token = tokens.issuer().issue(f"device:{uuid.uuid4()}", [Role.DEVICE], [BRANCH])
    return {"authorization": f"Bearer {token}", "content-type": "image/jpeg"}


async def test_one_trace_covers_gateway_access_facemodel_outbox_and_consumer(
    spans, make_door, relay, face_service, photo_bytes, tmp_path
):
    access_settings = await make_door()
    access_app = create_access_app(access_settings, keys=tokens.key_cache())
    bus = access_app.state.kernel.bus
    notification_settings = NotificationSettings(environment="test", data_dir=tmp_path / "notification")
    upgrade("notification", notification_settings.database_url("notification"))
    notification_app = create_notification_app(notification_settings, bus=bus, keys=tokens.key_cache())
    door = Door(access_app, None, relay[1], access_settings)

    async with serving(access_app) as access_url, asgi_client(notification_app):
        await door.enrol(face_service, photo_bytes, "obama.jpg")
        gateway_settings = GatewaySettings(environment="test", access_url=access_url)
        async with asgi_client(create_gateway_app(gateway_settings, keys=tokens.key_cache())) as gateway:
            spans.clear()
            response = await gateway.post(
                "/api/access/v1/gates/front-in/face", content=photo_bytes["biden.jpg"], headers=kiosk()
            )
            assert response.status_code == 200, response.text
            assert response.json()["reason"] == "face_not_recognised"

            def consumed() -> bool:
                return any(span.name == "consume AccessDenied.v1" for span in spans.get_finished_spans())

            await eventually(consumed, timeout=15)

    finished = spans.get_finished_spans()
    entry = next(span for span in finished if _is_gateway(span))
    trace_id = entry.context.trace_id
    in_trace = [span for span in finished if span.context.trace_id == trace_id]
    by_id = {span.context.span_id: span for span in in_trace}

    def service(span) -> str | None:
        return span.attributes.get(tracing.SERVICE_ATTRIBUTE)

    servers = {service(span) for span in in_trace if span.kind == SpanKind.SERVER}
    assert {"gateway", "access", "facemodel"} <= servers, sorted(span.name for span in in_trace)
    # gateway -> access and access -> facemodel went out as client spans carrying the context.
    assert sum(1 for span in in_trace if span.kind == SpanKind.CLIENT) >= 2

    [publish] = [span for span in in_trace if span.name == "publish AccessDenied.v1"]
    [consume] = [span for span in in_trace if span.name == "consume AccessDenied.v1"]
    assert publish.kind == SpanKind.PRODUCER
    assert service(publish) == "access"
    assert consume.kind == SpanKind.CONSUMER
    assert consume.attributes["smartgym.consumer"] == "notification.gate_denials"
    # The consumer continues the relay's publish span, which continues access's request.
    assert consume.parent.span_id == publish.context.span_id
    assert _ancestors(publish, by_id) & {span.context.span_id for span in in_trace if service(span) == "access"}
    assert entry.parent is None  # the kiosk sent no context: the gateway started the trace


def _is_gateway(span) -> bool:
    return span.kind == SpanKind.SERVER and span.attributes.get(tracing.SERVICE_ATTRIBUTE) == "gateway"


def _ancestors(span, by_id) -> set[int]:
    found: set[int] = set()
    while span.parent is not None and span.parent.span_id in by_id:
        found.add(span.parent.span_id)
        span = by_id[span.parent.span_id]
    return found
