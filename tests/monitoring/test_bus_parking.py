"""The event bus's backlog and parking lot through monitoring's operator API, against the
real broker: a consumer fails an event until it is parked, an operator lists and inspects
it, replays it, and the consumer takes it exactly once."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any, cast

import aio_pika
import httpx
import pytest

from common.events.bus import Subscriptions
from common.events.consumer import ERROR_HEADER
from common.events.envelope import EventCatalog, OutgoingMessage, utc_now
from common.events.inprocess import InProcessBus
from common.events.parking import ForgottenByTheInbox, NotParked, inbox_horizon, parking_lot_of
from common.events.rabbitmq import RabbitMQBus
from common.migrations import upgrade
from common.observability import Metrics
from common.security import Role
from contracts import CATALOG as CONTRACTS
from monitoring.app import create_app
from monitoring.settings import MonitoringSettings
from tests.monitoring.conftest import FAST, staff
from tests.support import tokens
from tests.support.apps import asgi_client
from tests.support.ledger import EntryRecorded
from tests.support.waiting import eventually

LEDGER = "ledger"


@dataclass
class Ledger:
    """A consumer that fails every event while ``failing`` is set."""

    failing: bool = True
    taken: Counter[int] = field(default_factory=Counter)
    attempts: Counter[int] = field(default_factory=Counter)

    async def handle(self, event: EntryRecorded) -> None:
        self.attempts[event.seq] += 1
        if self.failing:
            raise RuntimeError(f"ledger closed for entry {event.seq}")
        self.taken[event.seq] += 1

    def subscriptions(self) -> Subscriptions:
        subscriptions = Subscriptions(LEDGER)
        subscriptions.add_bus_handler(EntryRecorded, self.handle, name="record")
        return subscriptions


def catalog() -> EventCatalog:
    both = EventCatalog()
    for event_type in [*CONTRACTS, EntryRecorded]:
        both.register(event_type)
    return both


@dataclass
class Operations:
    bus: RabbitMQBus
    client: httpx.AsyncClient
    ledger: Ledger

    async def publish(self, *seqs: int, days_ago: float = 0) -> list[str]:
        occurred = utc_now() - timedelta(days=days_ago)
        events = [EntryRecorded(seq=seq, occurred_at=occurred) for seq in seqs]
        await self.bus.publish_many([OutgoingMessage.of(event) for event in events])
        return [str(event.event_id) for event in events]

    async def parked_count(self) -> int:
        answer = await self.client.get("/v1/bus/backlog", headers=staff())
        assert answer.status_code == 200, answer.text
        rows = {row["service"]: row for row in answer.json()["services"]}
        return int(rows[LEDGER]["parked"])

    async def parked_is(self, count: int) -> bool:
        return await self.parked_count() == count


@asynccontextmanager
async def operations(url: str, namespace: str, tmp_path, *, delivery_limit: int = 20) -> AsyncIterator[Operations]:
    fields: dict[str, Any] = {**FAST, "monitoring_bus_services": (LEDGER,)}
    settings = MonitoringSettings(environment="test", data_dir=tmp_path, **fields)
    upgrade("monitoring", settings.database_url("monitoring"))
    metrics = Metrics()
    bus = RabbitMQBus(
        url,
        catalog=catalog(),
        metrics=metrics,
        namespace=namespace,
        max_attempts=2,
        retry_delays_ms=(50,),
        delivery_limit=delivery_limit,
    )
    await bus.start()
    ledger = Ledger()
    try:
        await bus.subscribe(ledger.subscriptions())
        app = create_app(settings, bus=bus, metrics=metrics, keys=tokens.key_cache())
        async with asgi_client(app) as client:
            yield Operations(bus, client, ledger)
    finally:
        await bus.close()


on_broker = pytest.mark.usefixtures("broker_cleanup")


@on_broker
async def test_a_parked_event_is_listed_inspected_and_replayed_exactly_once(rabbitmq_url, namespace, tmp_path):
    async with operations(rabbitmq_url, namespace, tmp_path) as ops:
        [event_id] = await ops.publish(7)

        async def parked() -> bool:
            return await ops.parked_count() == 1

        await eventually(parked, timeout=15)
        assert ops.ledger.attempts[7] == 2  # the first try and one retry, then parked

        backlog = (await ops.client.get("/v1/bus/backlog", headers=staff())).json()
        assert backlog["kind"] == "rabbitmq"
        ledger_row = next(row for row in backlog["services"] if row["service"] == LEDGER)
        assert ledger_row == {
            "service": LEDGER,
            "queue": f"{namespace}.{LEDGER}",
            "exists": True,
            "ready": 0,
            "unacked": None,
            "consumers": 1,
            "retrying": 0,
            "parked": 1,
        }

        listed = await ops.client.get("/v1/bus/parked", params={"service": LEDGER}, headers=staff())
        assert listed.status_code == 200, listed.text
        [item] = listed.json()
        assert item["parked_id"] == event_id
        assert item["event_name"] == "TestEntryRecorded"
        assert item["routing_key"] == "TestEntryRecorded.v1"
        assert item["reason"] == "RuntimeError: ledger closed for entry 7"
        assert item["attempts"] == 2
        assert item["parked_at"] is not None
        assert '"seq":7' in item["preview"].replace(" ", "")

        detail = await ops.client.get(f"/v1/bus/parked/{LEDGER}/{event_id}", headers=staff())
        assert detail.status_code == 200, detail.text
        assert detail.json()["headers"][ERROR_HEADER] == "RuntimeError: ledger closed for entry 7"
        assert event_id in detail.json()["payload"]
        # Looking does not take it: it is still parked.
        assert await ops.parked_count() == 1

        for role in (Role.BRANCH_OWNER, Role.CUSTOMER):
            assert (await ops.client.get("/v1/bus/parked", headers=staff(role))).status_code == 403
            refused = await ops.client.post(f"/v1/bus/parked/{LEDGER}/{event_id}/replay", headers=staff(role))
            assert refused.status_code == 403

        ops.ledger.failing = False
        # Two operators press replay at the same moment: one copy goes back, once.
        first, second = await asyncio.gather(
            ops.client.post(f"/v1/bus/parked/{LEDGER}/{event_id}/replay", headers=staff()),
            ops.client.post(f"/v1/bus/parked/{LEDGER}/{event_id}/replay", headers=staff()),
        )
        assert sorted([first.status_code, second.status_code]) == [200, 404], (first.text, second.text)
        await eventually(lambda: ops.ledger.taken[7] == 1, timeout=10)
        assert await ops.parked_count() == 0
        await asyncio.sleep(0.3)  # a second copy would have arrived by now
        assert ops.ledger.taken[7] == 1
        again = await ops.client.post(f"/v1/bus/parked/{LEDGER}/{event_id}/replay", headers=staff())
        assert again.status_code == 404


@on_broker
async def test_a_message_the_broker_dead_lettered_is_shown_and_replayed(rabbitmq_url, namespace, tmp_path):
    async with operations(rabbitmq_url, namespace, tmp_path, delivery_limit=1) as ops:
        await ops.bus.stop_consuming(LEDGER)
        [event_id] = await ops.publish(11)
        # A consumer that dies holding the message, again and again: the broker counts the
        # deliveries and dead-letters it past the limit, with no reason of ours attached.
        connection = await aio_pika.connect(rabbitmq_url)
        async with connection:
            for _ in range(5):
                channel = await connection.channel()
                queue = await channel.get_queue(f"{namespace}.{LEDGER}", ensure=False)
                held = await queue.get(no_ack=False, fail=False)
                await channel.close()
                if held is None:
                    break

        async def parked() -> bool:
            return await ops.parked_count() == 1

        await eventually(parked, timeout=10)
        [item] = (await ops.client.get("/v1/bus/parked", params={"service": LEDGER}, headers=staff())).json()
        assert item["parked_id"] == event_id
        assert item["reason"] == "dead-lettered by the broker: delivery_limit"
        assert item["parked_at"] is not None
        assert item["attempts"] is None
        detail = (await ops.client.get(f"/v1/bus/parked/{LEDGER}/{event_id}", headers=staff())).json()
        assert "x-death" in detail["headers"]
        ops.ledger.failing = False
        await ops.bus.subscribe(ops.ledger.subscriptions())
        replayed = await ops.client.post(f"/v1/bus/parked/{LEDGER}/{event_id}/replay", headers=staff())
        assert replayed.status_code == 200, replayed.text
        await eventually(lambda: ops.ledger.taken[11] == 1, timeout=10)
        assert await ops.parked_count() == 0


@on_broker
async def test_every_parked_event_of_a_service_is_replayed_and_a_new_failure_parks_again(
    rabbitmq_url, namespace, tmp_path
):
    async with operations(rabbitmq_url, namespace, tmp_path) as ops:
        await ops.publish(1, 2, 3)

        async def three_parked() -> bool:
            return await ops.parked_count() == 3

        await eventually(three_parked, timeout=15)
        # Still failing: each replayed event is parked again, once, not replayed in a loop.
        answer = await ops.client.post(f"/v1/bus/parked/{LEDGER}/replay", json={"limit": 10}, headers=staff())
        assert answer.status_code == 200, answer.text
        assert sorted(item["event_name"] for item in answer.json()["replayed"]) == ["TestEntryRecorded"] * 3
        await eventually(lambda: sum(ops.ledger.attempts.values()) == 12, timeout=15)
        await eventually(three_parked, timeout=15)
        listed = (await ops.client.get("/v1/bus/parked", params={"service": LEDGER}, headers=staff())).json()
        assert [item["replays"] for item in listed] == [1, 1, 1]

        ops.ledger.failing = False
        answer = await ops.client.post(f"/v1/bus/parked/{LEDGER}/replay", headers=staff())
        assert len(answer.json()["replayed"]) == 3
        await eventually(lambda: ops.ledger.taken == Counter({1: 1, 2: 1, 3: 1}), timeout=10)
        assert await ops.parked_count() == 0


@on_broker
async def test_replaying_every_parked_event_while_a_reader_lets_go_of_them_finds_them(
    rabbitmq_url, namespace, tmp_path
):
    # A listing holds the parked messages on a channel it then closes; the queue counts
    # them as ready only once it has taken them back, a moment later (longer on a loaded
    # broker). An operator who reads the list and presses replay at once must not be told
    # nothing was parked. Here the reader lets go while the replay is already looking.
    async with operations(rabbitmq_url, namespace, tmp_path) as ops:
        await ops.publish(1, 2, 3)
        await eventually(lambda: ops.parked_is(3), timeout=15)
        ops.ledger.failing = False
        connection = await aio_pika.connect(rabbitmq_url)
        async with connection:
            reader = await connection.channel()
            queue = await reader.get_queue(f"{namespace}.{LEDGER}.parking", ensure=False)
            held = [await queue.get(no_ack=False) for _ in range(3)]
            assert len(held) == 3

            async def let_go_soon() -> None:
                await asyncio.sleep(0.3)
                await reader.close()

            answer, _ = await asyncio.gather(
                ops.client.post(f"/v1/bus/parked/{LEDGER}/replay", headers=staff()), let_go_soon()
            )
        assert answer.status_code == 200, answer.text
        assert len(answer.json()["replayed"]) == 3, answer.text
        await eventually(lambda: ops.ledger.taken == Counter({1: 1, 2: 1, 3: 1}), timeout=10)
        assert await ops.parked_count() == 0


@on_broker
async def test_a_listing_answers_once_the_lot_counts_what_it_looked_at_again(rabbitmq_url, namespace, tmp_path):
    # The operations page asks for the backlog and the list at once, every few seconds. The
    # list's reader holds the parked messages on a channel it closes, and the queue counts
    # them ready again only a moment later: the backlog must not show the lot emptier than
    # it is, beside a listing or right after one.
    async with operations(rabbitmq_url, namespace, tmp_path) as ops:
        await ops.publish(1, 2, 3)
        await eventually(lambda: ops.parked_is(3), timeout=15)
        connection = await aio_pika.connect(rabbitmq_url)
        async with connection:
            channel = await connection.channel()
            right_after: list[int] = []
            beside: list[int] = []
            for _ in range(10):
                listed, count = await asyncio.gather(
                    ops.client.get("/v1/bus/parked", params={"service": LEDGER}, headers=staff()), ops.parked_count()
                )
                queue = await channel.declare_queue(f"{namespace}.{LEDGER}.parking", passive=True)
                right_after.append(queue.declaration_result.message_count)
                beside.append(count)
                assert len(listed.json()) == 3
        assert right_after == [3] * 10
        assert beside == [3] * 10


@on_broker
async def test_an_event_older_than_the_inbox_remembers_stays_parked_unless_asked_by_name(
    rabbitmq_url, namespace, tmp_path
):
    # The inbox keeps 30 days: a copy of a 40-day-old event applied back then is forgotten,
    # so its replay could apply it twice. Replaying every parked event leaves such events
    # parked (and they do not use up the limit); replaying one by name says why, and does
    # it when the operator says no copy was applied.
    async with operations(rabbitmq_url, namespace, tmp_path) as ops:
        old_ids = await ops.publish(1, 2, days_ago=40)
        await eventually(lambda: ops.parked_is(2), timeout=15)
        await ops.publish(3, days_ago=1)
        await eventually(lambda: ops.parked_is(3), timeout=15)
        ops.ledger.failing = False
        answer = await ops.client.post(f"/v1/bus/parked/{LEDGER}/replay", json={"limit": 1}, headers=staff())
        assert answer.status_code == 200, answer.text
        assert sorted(item["event_id"] for item in answer.json()["kept"]) == sorted(old_ids)
        assert answer.json()["kept_count"] == 2
        assert [item["event_name"] for item in answer.json()["replayed"]] == ["TestEntryRecorded"]
        await eventually(lambda: ops.ledger.taken == Counter({3: 1}), timeout=10)
        await eventually(lambda: ops.parked_is(2), timeout=10)

        listed = (await ops.client.get("/v1/bus/parked", params={"service": LEDGER}, headers=staff())).json()
        assert sorted(item["event_id"] for item in listed) == sorted(old_ids)
        assert all(item["occurred_at"] < (utc_now() - timedelta(days=39)).isoformat() for item in listed)
        url = f"/v1/bus/parked/{LEDGER}/{listed[0]['parked_id']}/replay"
        refused = await ops.client.post(url, headers=staff())
        assert refused.status_code == 409
        assert refused.headers["x-smartgym-refusal"] == "older-than-inbox"
        assert "Replay it anyway only if no copy of it ever was" in refused.json()["detail"]
        await eventually(lambda: ops.parked_is(2), timeout=10)
        forced = await ops.client.post(url, params={"older_than_inbox": "true"}, headers=staff())
        assert forced.status_code == 200, forced.text
        forced_seq = 1 + old_ids.index(listed[0]["event_id"])
        await eventually(lambda: ops.ledger.taken == Counter({forced_seq: 1, 3: 1}), timeout=10)
        await eventually(lambda: ops.parked_is(1), timeout=10)


@on_broker
async def test_a_replay_of_everything_scans_no_further_than_the_limit_and_the_scan_limit(
    rabbitmq_url, namespace, tmp_path
):
    async with operations(rabbitmq_url, namespace, tmp_path) as ops:
        # Parked in turn: retries can park a batch's events in any order, and the scan
        # must meet the old ones first.
        await ops.publish(1, 2, 3, days_ago=40)
        await eventually(lambda: ops.parked_is(3), timeout=15)
        await ops.publish(4)
        await eventually(lambda: ops.parked_is(4), timeout=15)
        ops.ledger.failing = False
        lot = parking_lot_of(ops.bus, scan_limit=1)
        horizon = inbox_horizon(retention=timedelta(days=30), now=utc_now())
        outcome = await lot.replay_all(service=LEDGER, limit=1, requested_by="op", remembered_since=horizon)
        # Two looked at (the limit and the scan limit), both too old: the fresh one waits.
        assert (len(outcome.replayed), outcome.kept_count) == (0, 2)
        await eventually(lambda: ops.parked_is(4), timeout=10)
        assert ops.ledger.taken == Counter()


def test_the_horizon_leaves_a_short_retention_half_of_itself():
    now = utc_now()
    assert inbox_horizon(retention=timedelta(days=30), now=now) == now - timedelta(days=29)
    assert inbox_horizon(retention=timedelta(days=1), now=now) == now - timedelta(hours=12)


async def test_the_in_process_lot_keeps_what_the_inbox_has_forgotten():
    ledger = Ledger()
    bus = InProcessBus(catalog=catalog(), metrics=Metrics(), max_attempts=1)
    await bus.start()
    try:
        await bus.subscribe(ledger.subscriptions())
        lot = parking_lot_of(bus)
        long_ago = utc_now() - timedelta(days=40)
        await bus.publish_many([OutgoingMessage.of(EntryRecorded(seq=seq, occurred_at=long_ago)) for seq in (4, 5)])
        # Unix seconds, as a producer may write them: the consumer's reading, not only ISO.
        message = OutgoingMessage.of(EntryRecorded(seq=6))
        body = json.loads(message.body)
        body["occurred_at"] = long_ago.timestamp()
        await bus.publish_many([replace(message, body=json.dumps(body).encode())])
        await bus.publish_many([OutgoingMessage.of(EntryRecorded(seq=7))])
        ledger.failing = False
        horizon = utc_now() - timedelta(days=30)
        outcome = await lot.replay_all(service=LEDGER, limit=1, requested_by="op", remembered_since=horizon)
        assert [item.event_name for item in outcome.replayed] == ["TestEntryRecorded"]
        assert len(outcome.kept) == outcome.kept_count == 3
        with pytest.raises(ForgottenByTheInbox):
            await lot.replay(
                service=LEDGER, parked_id=outcome.kept[0].parked_id, requested_by="op", remembered_since=horizon
            )
        await lot.replay(service=LEDGER, parked_id=outcome.kept[0].parked_id, requested_by="op", remembered_since=None)
        await eventually(lambda: ledger.taken == Counter({4: 1, 7: 1}), timeout=5)
    finally:
        await bus.close()


@on_broker
async def test_bad_names_are_refused_with_reasons(rabbitmq_url, namespace, tmp_path):
    async with operations(rabbitmq_url, namespace, tmp_path) as ops:
        unknown = await ops.client.get("/v1/bus/parked", params={"service": "nosuch"}, headers=staff())
        assert unknown.status_code == 404
        assert "no service nosuch" in unknown.json()["detail"]
        bad = await ops.client.get(f"/v1/bus/parked/{LEDGER}/not%20an%20id", headers=staff())
        assert bad.status_code == 422
        missing = await ops.client.post(f"/v1/bus/parked/{LEDGER}/{uuid.uuid4()}/replay", headers=staff())
        assert missing.status_code == 404
        too_many = await ops.client.post(f"/v1/bus/parked/{LEDGER}/replay", json={"limit": 0}, headers=staff())
        assert too_many.status_code == 422


async def test_the_in_process_lot_replays_from_its_file_once(tmp_path):
    lot_file = tmp_path / "bus-parked.db"
    ledger = Ledger()
    bus = InProcessBus(catalog=catalog(), metrics=Metrics(), max_attempts=1, parking_lot=lot_file)
    await bus.start()
    await bus.subscribe(ledger.subscriptions())
    lot = parking_lot_of(bus)
    await bus.publish_many([OutgoingMessage.of(EntryRecorded(seq=4))])
    [item] = await lot.parked(service=LEDGER, limit=10)
    assert item.reason == "RuntimeError: ledger closed for entry 4"
    assert (await lot.inspect(service=LEDGER, parked_id=item.parked_id)).payload is not None
    ledger.failing = False
    await lot.replay(service=LEDGER, parked_id=item.parked_id, requested_by="op", remembered_since=None)
    with pytest.raises(NotParked):
        await lot.replay(service=LEDGER, parked_id=item.parked_id, requested_by="op", remembered_since=None)
    await eventually(lambda: ledger.taken[4] == 1, timeout=5)
    await bus.close()
    # Gone from the file too: a restart does not bring it back.
    again = InProcessBus(catalog=catalog(), metrics=Metrics(), parking_lot=lot_file)
    await again.start()
    assert again.parked == []
    await again.close()


@on_broker
async def test_without_a_list_only_the_installed_services_with_a_queue_are_shown(rabbitmq_url, namespace, tmp_path):
    settings = MonitoringSettings(environment="test", data_dir=tmp_path, **cast(dict[str, Any], FAST))
    upgrade("monitoring", settings.database_url("monitoring"))
    bus = RabbitMQBus(rabbitmq_url, catalog=catalog(), metrics=Metrics(), namespace=namespace)
    await bus.start()
    try:
        app = create_app(settings, bus=bus, keys=tokens.key_cache())
        async with asgi_client(app) as client:
            backlog = (await client.get("/v1/bus/backlog", headers=staff())).json()
    finally:
        await bus.close()
    # auth, facemodel… publish only: no queue, no row. monitoring consumes.
    assert [row["service"] for row in backlog["services"]] == ["monitoring"]


async def test_in_process_a_site_consumer_is_inspected_and_replayed_through_the_api(tmp_path):
    """Embedded mode: the lot is the in-process bus; consumers named per site (dots)."""
    settings = MonitoringSettings(environment="test", data_dir=tmp_path, **cast(dict[str, Any], FAST))
    upgrade("monitoring", settings.database_url("monitoring"))
    ledger = Ledger()
    site = Subscriptions(f"{LEDGER}.gangnam-1")
    site.add_bus_handler(EntryRecorded, ledger.handle, name="record")
    bus = InProcessBus(catalog=catalog(), metrics=Metrics(), max_attempts=1)
    await bus.start()
    await bus.subscribe(site)
    app = create_app(settings, bus=bus, keys=tokens.key_cache())
    async with asgi_client(app) as client:
        await bus.publish_many([OutgoingMessage.of(EntryRecorded(seq=9))])
        backlog = (await client.get("/v1/bus/backlog", headers=staff())).json()
        assert backlog["kind"] == "in-process"
        assert {row["service"]: row["parked"] for row in backlog["services"]}["ledger.gangnam-1"] == 1
        [item] = (await client.get("/v1/bus/parked", headers=staff())).json()
        url = f"/v1/bus/parked/ledger.gangnam-1/{item['parked_id']}"
        assert (await client.get(url, headers=staff())).json()["reason"] == "RuntimeError: ledger closed for entry 9"
        ledger.failing = False
        assert (await client.post(f"{url}/replay", headers=staff())).status_code == 200
        assert (await client.post(f"{url}/replay", headers=staff())).status_code == 404
        await eventually(lambda: ledger.taken[9] == 1, timeout=5)
        assert (await client.get("/v1/bus/parked", headers=staff())).json() == []
    await bus.close()
