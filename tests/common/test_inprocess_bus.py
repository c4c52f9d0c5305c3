from __future__ import annotations

import pytest

from common.events.bus import PublishError, Subscriptions
from common.events.envelope import OutgoingMessage
from common.events.inprocess import InProcessBus
from common.observability import Metrics
from tests.support.ledger import CATALOG, EntryRecorded


def bus() -> InProcessBus:
    return InProcessBus(catalog=CATALOG, metrics=Metrics(), max_attempts=3, retry_delays_ms=(1, 1))


async def test_handler_is_retried_then_parked():
    calls = []

    async def fails(event):
        calls.append(event.seq)
        raise ValueError("nope")

    in_process = bus()
    subs = Subscriptions("ledger")
    subs.add_bus_handler(EntryRecorded, fails, name="fails")
    await in_process.subscribe(subs)
    await in_process.publish_many([OutgoingMessage.of(EntryRecorded(seq=1))])
    assert calls == [1, 1, 1]
    [parked] = in_process.parked
    assert parked.reason == "ValueError: nope"


async def test_malformed_message_is_parked():
    in_process = bus()
    subs = Subscriptions("ledger")
    subs.add_bus_handler(EntryRecorded, lambda event: None, name="noop")
    await in_process.subscribe(subs)
    message = OutgoingMessage(EntryRecorded(seq=1).event_id, EntryRecorded.routing_key(), b"{}", None)
    await in_process.publish_many([message])
    assert in_process.parked[0].reason.startswith("malformed")


async def test_publishing_to_a_stopped_subscriber_fails_so_the_outbox_keeps_the_event():
    in_process = bus()
    got = []

    async def record(event):
        got.append(event.seq)

    subs = Subscriptions("ledger")
    subs.add_bus_handler(EntryRecorded, record, name="record")
    await in_process.subscribe(subs)
    await in_process.stop_consuming("ledger")
    with pytest.raises(PublishError):
        await in_process.publish_many([OutgoingMessage.of(EntryRecorded(seq=1))])
    await in_process.subscribe(subs)
    await in_process.publish_many([OutgoingMessage.of(EntryRecorded(seq=1))])
    assert got == [1]


async def test_parked_messages_survive_a_restart_in_the_parking_lot(tmp_path):
    lot = tmp_path / "bus-parked.db"

    async def fails(event):
        raise ValueError("nope")

    first = InProcessBus(catalog=CATALOG, metrics=Metrics(), max_attempts=2, retry_delays_ms=(1,), parking_lot=lot)
    await first.start()
    subs = Subscriptions("ledger")
    subs.add_bus_handler(EntryRecorded, fails, name="fails")
    await first.subscribe(subs)
    message = OutgoingMessage.of(EntryRecorded(seq=7))
    await first.publish_many([message])
    assert len(first.parked) == 1

    # A new process: the parked message is still there, body and reason intact.
    second = InProcessBus(catalog=CATALOG, metrics=Metrics(), parking_lot=lot)
    await second.start()
    [parked] = second.parked
    assert (parked.service, parked.routing_key, parked.body) == ("ledger", message.routing_key, message.body)
    assert parked.reason == "ValueError: nope"
    assert second.health()["parked"] == 1


async def test_smartgym_parked_lists_the_parking_lot(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from smartgym.cli import main

    lot = tmp_path / "bus-parked.db"
    in_process = InProcessBus(catalog=CATALOG, metrics=Metrics(), max_attempts=1, parking_lot=lot)
    await in_process.start()
    subs = Subscriptions("ledger")
    subs.add_bus_handler(EntryRecorded, lambda event: None, name="noop")
    await in_process.subscribe(subs)
    message = OutgoingMessage(EntryRecorded(seq=1).event_id, EntryRecorded.routing_key(), b"{}", None)
    await in_process.publish_many([message])

    monkeypatch.setenv("SMARTGYM_DATA_DIR", str(tmp_path))
    shown = CliRunner().invoke(main, ["parked"])
    assert shown.exit_code == 0, shown.output
    assert "1 parked event(s)" in shown.output
    assert f"ledger\t{EntryRecorded.routing_key()}\tmalformed" in shown.output
