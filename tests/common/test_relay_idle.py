"""The outbox relay's idle polls back off, and rows written elsewhere are still relayed
within the longest wait; a commit of this process wakes it at once."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from common.db import Database
from common.events.bus import Subscriptions
from common.events.inprocess import InProcessBus
from common.events.outbox import OutboxRelay, UnitOfWork
from common.observability import Metrics
from tests.support.ledger import CATALOG, TABLES, EntryRecorded, create_schema
from tests.support.waiting import eventually


class CountingRelay(OutboxRelay):
    polls = 0

    async def relay_once(self, *, claimed: asyncio.Future[int] | None = None) -> int:
        self.polls += 1
        return await super().relay_once(claimed=claimed)


async def test_idle_polls_back_off_and_rows_from_elsewhere_still_leave(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'ledger.db'}"
    create_schema(url)
    database = Database(url)
    bus = InProcessBus(catalog=CATALOG, metrics=Metrics())
    received: list[tuple[int, float]] = []

    async def record(event: EntryRecorded) -> None:
        received.append((event.seq, time.monotonic()))

    subscriptions = Subscriptions("ledger")
    subscriptions.add_bus_handler(EntryRecorded, record, name="record")
    await bus.subscribe(subscriptions)
    relay = CountingRelay(
        service="ledger", database=database, tables=TABLES, bus=bus, metrics=Metrics(),
        poll_interval_s=0.05, idle_poll_max_s=1.0,
    )  # fmt: skip
    relay.start()
    try:
        await asyncio.sleep(3.0)
        # 0.05, 0.1, 0.2, 0.4, 0.8, then every 1 s: about 8 polls, where a fixed interval made 60.
        assert relay.polls <= 12, relay.polls

        # Written by "another process": nothing wakes the relay; the backed-off poll finds it.
        async with UnitOfWork(database, TABLES, on_commit=lambda: None) as uow:
            uow.emit(EntryRecorded(seq=1))
        written = time.monotonic()
        await eventually(lambda: len(received) == 1, timeout=5)
        assert received[0][1] - written <= 1.0 + 0.5

        # A commit here wakes it at once, however long the idle wait has grown. Written
        # just after an idle poll, so the next poll is a whole second away: an arrival
        # within 0.3 s can only be the wake's doing.
        await asyncio.sleep(2.0)
        polls = relay.polls
        await eventually(lambda: relay.polls > polls, timeout=3, every=0.005)
        async with UnitOfWork(database, TABLES, on_commit=relay.wake) as uow:
            uow.emit(EntryRecorded(seq=2))
        written = time.monotonic()
        await eventually(lambda: len(received) == 2, timeout=5)
        assert received[1][1] - written < 0.3
    finally:
        await relay.stop()
        await database.dispose()
