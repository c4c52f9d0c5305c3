"""Trace context through the outbox and the real broker: the relay's publish span
continues the trace the events were written in, and its traceparent, carried in the
AMQP headers, is what the consumer's span continues."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from common import tracing
from common.db import Database
from common.events.outbox import OutboxRelay, UnitOfWork
from common.events.rabbitmq import RabbitMQBus
from common.observability import Metrics
from tests.support.ledger import CATALOG, TABLES, EntryRecorded, consumer_subscriptions, create_schema
from tests.support.waiting import eventually

pytestmark = pytest.mark.usefixtures("broker_cleanup")


@pytest.fixture
def spans():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.enable(provider)
    yield exporter
    tracing.disable()


async def test_the_consumer_continues_the_relays_publish_span_from_the_amqp_headers(
    spans, rabbitmq_url, namespace, postgres
):
    producer_url, consumer_url = postgres.create("trace_producer"), postgres.create("trace_consumer")
    create_schema(producer_url)
    create_schema(consumer_url)
    producer, consumer = Database(producer_url), Database(consumer_url)
    metrics = Metrics()
    bus = RabbitMQBus(rabbitmq_url, catalog=CATALOG, metrics=metrics, namespace=namespace)
    await bus.start()
    await bus.subscribe(consumer_subscriptions("ledger", consumer, metrics))
    relay = OutboxRelay(service="ledger", database=producer, tables=TABLES, bus=bus, metrics=metrics)
    try:
        with tracing.span("POST /entries", kind=tracing.SpanKind.SERVER) as request:
            async with UnitOfWork(producer, TABLES, on_commit=lambda: None) as uow:
                uow.emit(EntryRecorded(seq=1))
        relay.start()
        await eventually(lambda: any(span.name.startswith("consume") for span in spans.get_finished_spans()))
    finally:
        await relay.stop()
        await bus.close()
        await producer.dispose()
        await consumer.dispose()
    by_name = {span.name: span for span in spans.get_finished_spans()}
    publish, consume = by_name["publish TestEntryRecorded.v1"], by_name["consume TestEntryRecorded.v1"]
    assert request is not None
    assert publish.parent.span_id == request.get_span_context().span_id  # from the outbox row
    assert consume.parent.span_id == publish.context.span_id  # from the AMQP headers
    assert consume.context.trace_id == request.get_span_context().trace_id
