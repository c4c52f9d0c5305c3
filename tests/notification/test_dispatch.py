"""Pushes due now are leased in the transaction that queues them and handed straight to
the sender; a process that dies holding them leaves them to a claim once the lease runs
out, and a push whose lease ran out while it waited is never sent by its old holder."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from common.security import Role
from notification.dispatch import Claimed
from notification.fcm import Push
from notification.models import Delivery
from tests.notification.conftest import BRANCH, person
from tests.notification.test_notices import deliveries, fault
from tests.support.waiting import eventually


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
async def test_pushes_due_now_are_leased_at_birth_and_sent_without_a_claim(database, open_notifications, fcm, request):
    # The claim loop polls every 10 s and nobody wakes it: only the hand-over sends in time.
    overrides: dict[str, Any] = {"notification_poll_interval_s": 10}
    if database == "postgresql":  # where the notices and pushes are written as arrays
        overrides["database_urls"] = {"notification": request.getfixturevalue("postgres").create("notification")}
    async with open_notifications(**overrides) as notifications:
        owners = [person(Role.BRANCH_OWNER, (BRANCH,)) for _ in range(2)]
        phones = {await notifications.with_phone(owner) for owner in owners}
        phones.add(await notifications.with_phone(owners[0]))  # a second phone
        quiet = person(Role.BRANCH_OWNER, (BRANCH,))
        now = datetime.now(UTC)
        await notifications.with_phone(
            quiet,
            quiet_start=(now - timedelta(hours=1)).strftime("%H:%M"),
            quiet_end=(now + timedelta(hours=1)).strftime("%H:%M"),
            timezone="UTC",
        )
        await asyncio.sleep(0.2)  # the claim loop's first round has passed
        events = [fault(device_id=f"treadmill-{n:02d}") for n in range(5)]
        await notifications.announce(*events)
        await eventually(lambda: len(fcm.state.received) == 15, timeout=5)

        async def recorded() -> bool:
            return sorted(row.status for row in await deliveries(notifications)) == ["pending"] * 5 + ["sent"] * 15

        await eventually(recorded, timeout=3)
        rows = await deliveries(notifications)
        sent = [row for row in rows if row.status == "sent"]
        assert all(row.next_attempt_at > now + timedelta(seconds=50) for row in sent)  # leased at birth
        assert {row.attempts for row in sent} == {1}
        assert all(row.sent_at is not None and row.last_error is None for row in sent)
        assert {row.token for row in sent} == phones
        assert all(
            row.data["message_id"] == str(row.message_id) and row.data["kind"] == "equipment_fault" for row in rows
        )
        # Held for the quiet hours: due when they end, not leased.
        held = [row for row in rows if row.status == "pending"]
        assert all(row.next_attempt_at > now + timedelta(minutes=50) for row in held)
        assert all(row.attempts == 0 for row in held)
        for pushed in fcm.state.received:
            # A copy sent again after a crash replaces this one on the phone.
            notice = pushed.message["data"]["message_id"]
            assert pushed.message["android"]["notification"] == {"tag": f"notice-{notice}"}
            assert pushed.message["apns"]["headers"]["apns-collapse-id"] == f"notice-{notice}"
        by_notice = {(row.message_id, row.token) for row in sent}
        assert {(int(item.message["data"]["message_id"]), item.token) for item in fcm.state.received} == by_notice
        for owner in owners:
            assert len(await notifications.inbox(owner)) == 5
        assert len(await notifications.inbox(quiet)) == 5


async def test_pushes_a_dead_process_held_are_sent_once_when_their_lease_runs_out(notifications, fcm):
    dispatcher = notifications.app.state.dispatcher
    taken: list[list[Claimed]] = []
    dispatcher.take = taken.append  # the process dies between the commit and the sends
    owner = person(Role.BRANCH_OWNER, (BRANCH,))
    await notifications.with_phone(owner)
    await notifications.announce(fault())
    await eventually(lambda: len(taken) == 1, timeout=3)
    await asyncio.sleep(0.3)
    assert fcm.state.received == []  # leased: no claim takes it from its holder
    [held] = await deliveries(notifications)
    assert held.status == "pending"

    async with notifications.app.state.kernel.db.transaction() as session:  # the lease runs out
        row = await session.get(Delivery, held.id)
        assert row is not None
        row.next_attempt_at = datetime.now(UTC) - timedelta(seconds=1)
    dispatcher.wake()
    await eventually(lambda: len(fcm.state.received) == 1, timeout=3)

    async def recorded() -> bool:
        return [row.status for row in await deliveries(notifications)] == ["sent"]

    await eventually(recorded, timeout=3)
    await asyncio.sleep(0.3)
    assert len(fcm.state.received) == 1


async def hold_the_hand_over(notifications: Any) -> tuple[Callable[[list[Claimed]], None], list[list[Claimed]]]:
    """Announce a fault to an owner with a phone, and keep the leased pushes the commit
    hands to the sender instead of sending them: returns the sender's real intake and what
    it was handed."""
    dispatcher = notifications.app.state.dispatcher
    real_take = dispatcher.take
    taken: list[list[Claimed]] = []
    dispatcher.take = taken.append
    await notifications.with_phone(person(Role.BRANCH_OWNER, (BRANCH,)))
    await notifications.announce(fault())
    await eventually(lambda: len(taken) == 1, timeout=3)
    return real_take, taken


async def test_a_push_whose_lease_ran_out_while_it_waited_is_not_sent(notifications, fcm):
    real_take, taken = await hold_the_hand_over(notifications)
    [[handed]] = taken
    # Too little of the lease left for a send to finish before another sender may lease it.
    real_take([Claimed(handed.id, handed.attempts, handed.push, until=time.monotonic() + 1.0)])
    await asyncio.sleep(0.5)
    assert fcm.state.received == []
    [row] = await deliveries(notifications)
    assert (row.status, row.attempts) == ("pending", 0)
    # The hand-over carried what the row holds.
    assert handed.push == Push(row.token, row.title, row.body, row.data, row.critical)


async def test_pushes_handed_over_after_a_stop_are_made_due_for_another_replica(notifications, fcm):
    dispatcher = notifications.app.state.dispatcher
    real_take, taken = await hold_the_hand_over(notifications)
    [held] = await deliveries(notifications)
    assert held.next_attempt_at > datetime.now(UTC) + timedelta(seconds=50)
    await dispatcher.stop()  # a rolling restart stops the sender while a batch commits
    real_take(taken[0])

    async def due_again() -> bool:
        [row] = await deliveries(notifications)
        return row.status == "pending" and row.next_attempt_at <= datetime.now(UTC)

    await eventually(due_again, timeout=3)
    assert fcm.state.received == []  # left for another replica, not sent on the way out
