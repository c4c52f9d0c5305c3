"""An in-process bus for a service under test, recording the events it publishes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from common.events.envelope import Event
from common.events.inprocess import InProcessBus
from common.observability import Metrics
from contracts import CATALOG


@dataclass
class RecordingBus:
    bus: InProcessBus
    metrics: Metrics
    recorded: list[Event] = field(default_factory=list)


@asynccontextmanager
async def recording_bus(*event_types: type[Event]) -> AsyncIterator[RecordingBus]:
    metrics = Metrics()
    bus = InProcessBus(catalog=CATALOG, metrics=metrics)
    await bus.start()
    recording = RecordingBus(bus, metrics)

    async def record(event: Event) -> None:
        recording.recorded.append(event)

    if event_types:
        await bus.broadcast(list(event_types), record)
    try:
        yield recording
    finally:
        await bus.close()
