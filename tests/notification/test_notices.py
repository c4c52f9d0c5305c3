"""Events become inbox notices and pushes for the right people, once each, with retries,
clean-up of dead tokens, quiet hours and languages — through the local FCM stand-in."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from common.security import Role
from contracts import (
    AccessDenied,
    BranchPreferenceCreated,
    EquipmentFault,
    EquipmentFaultEscalated,
    EquipmentFaultWithdrawn,
    EquipmentRecovered,
    PasswordResetRequested,
    TaskConfirmed,
    TaskJudged,
    TaskReviewOverdue,
)
from notification.models import Delivery, PushToken
from tests.notification.conftest import BRANCH, person
from tests.support.waiting import eventually


def fault(branch: str = BRANCH, criticality: str = "major", **overrides) -> EquipmentFault:
    fields = {
        "fault_id": uuid.uuid4(),
        "device_id": "treadmill-03",
        "branch_id": branch,
        "kind": "treadmill",
        "name": "Treadmill 3",
        "criticality": criticality,
        "reason": "ping failed: timeout",
        "detected_at": datetime.now(UTC),
    }
    return EquipmentFault(**{**fields, **overrides})


async def deliveries(notifications) -> list[Delivery]:
    async with notifications.app.state.kernel.db.sessions() as session:
        return list((await session.scalars(select(Delivery).order_by(Delivery.id))).all())


async def test_a_fault_reaches_the_owner_of_that_branch_and_nobody_else(notifications, fcm):
    owner = person(Role.BRANCH_OWNER, (BRANCH,))
    other_owner = person(Role.BRANCH_OWNER, ("hongdae",))
    member = person(Role.CUSTOMER)
    owner_phone = await notifications.with_phone(owner)
    await notifications.with_phone(other_owner)
    await notifications.with_phone(member)

    event = fault()
    await notifications.announce(event)
    await eventually(lambda: len(fcm.state.received) == 1, timeout=5)
    [pushed] = fcm.state.received
    assert pushed.token == owner_phone
    assert pushed.message["notification"]["title"] == "[gangnam] Treadmill 3 고장"
    assert pushed.message["data"]["fault_id"] == str(event.fault_id)
    [notice] = await notifications.inbox(owner)
    assert (notice["kind"], notice["read"]) == ("equipment_fault", False)
    assert await notifications.inbox(other_owner) == []
    assert await notifications.inbox(member) == []


async def test_a_redelivered_event_notifies_once(notifications, fcm):
    owner = person(Role.BRANCH_OWNER, (BRANCH,))
    await notifications.with_phone(owner)
    event = fault()
    await notifications.announce(event)
    await notifications.announce(event)  # the broker's at-least-once
    await eventually(lambda: len(fcm.state.received) >= 1, timeout=5)
    await asyncio.sleep(0.3)
    assert len(fcm.state.received) == 1
    assert len(await notifications.inbox(owner)) == 1


async def test_an_uninstalled_app_loses_its_token_and_the_other_phone_still_gets_it(notifications, fcm):
    owner = person(Role.BRANCH_OWNER, (BRANCH,))
    old_phone = await notifications.with_phone(owner)
    new_phone = await notifications.with_phone(owner)
    fcm.state.unregistered.add(old_phone)
    await notifications.announce(fault())
    await eventually(lambda: [item.token for item in fcm.state.received] == [new_phone], timeout=5)

    async def cleaned() -> bool:
        async with notifications.app.state.kernel.db.sessions() as session:
            return await session.get(PushToken, old_phone) is None

    await eventually(cleaned, timeout=5)
    statuses = sorted(row.status for row in await deliveries(notifications))
    assert statuses == ["dropped", "sent"]


async def test_quota_and_outage_are_retried_with_back_off_honouring_retry_after(notifications, fcm):
    owner = person(Role.BRANCH_OWNER, (BRANCH,))
    await notifications.with_phone(owner)
    fcm.state.failures.extend([("QUOTA_EXCEEDED", 0.6), ("UNAVAILABLE", None)])
    started = asyncio.get_running_loop().time()
    await notifications.announce(fault())
    await eventually(lambda: len(fcm.state.received) == 1, timeout=10)
    assert asyncio.get_running_loop().time() - started >= 0.6  # waited as FCM asked

    async def recorded() -> bool:  # the outcome is written just after FCM answers
        [row] = await deliveries(notifications)
        return (row.status, row.attempts) == ("sent", 3)

    await eventually(recorded, timeout=5)


async def test_a_push_that_keeps_failing_is_parked_with_its_reason(open_notifications, fcm):
    async with open_notifications(notification_max_attempts=3) as notifications:
        owner = person(Role.BRANCH_OWNER, (BRANCH,))
        await notifications.with_phone(owner)
        fcm.state.failures.extend([("UNAVAILABLE", None)] * 5)

        async def parked() -> bool:
            rows = await deliveries(notifications)
            return bool(rows) and rows[0].status == "parked"

        await notifications.announce(fault())
        await eventually(parked, timeout=10)
        [row] = await deliveries(notifications)
        assert row.attempts == 3
        assert "UNAVAILABLE" in (row.last_error or "")
        assert len(await notifications.inbox(owner)) == 1  # the inbox still has it


async def test_quiet_hours_hold_routine_notices_but_not_critical_faults(notifications, fcm):
    now = datetime.now(UTC)
    start, end = (now - timedelta(hours=1)).strftime("%H:%M"), (now + timedelta(hours=1)).strftime("%H:%M")
    owner = person(Role.BRANCH_OWNER, (BRANCH,))
    await notifications.with_phone(owner, quiet_start=start, quiet_end=end, timezone="UTC", locale="en")

    await notifications.announce(fault(criticality="major"), fault(criticality="critical", name="Front door"))
    await eventually(lambda: len(fcm.state.received) == 1, timeout=5)
    await asyncio.sleep(0.3)
    [pushed] = fcm.state.received
    assert pushed.message["notification"]["title"] == "[gangnam] Front door is down"  # English, as asked
    held = [row for row in await deliveries(notifications) if row.status == "pending"]
    assert len(held) == 1
    assert held[0].next_attempt_at > now + timedelta(minutes=50)  # until the quiet hours end
    assert len(await notifications.inbox(owner)) == 2  # both are in the inbox at once


async def test_recovery_escalation_task_and_profile_go_to_their_people(notifications, fcm):
    owner = person(Role.BRANCH_OWNER, (BRANCH,))
    operator = person(Role.OPERATOR)
    helper = person(Role.HELPER)
    for who in (owner, operator, helper):
        await notifications.with_phone(who)
    down = fault()
    await notifications.announce(
        BranchPreferenceCreated(
            preference_id=uuid.uuid4(),
            branch_id=BRANCH,
            default_locale="en",
            topics=("yoga", "running"),
            created_by=owner.user_id,
        ),
        EquipmentRecovered(
            fault_id=down.fault_id,
            device_id=down.device_id,
            branch_id=BRANCH,
            kind="treadmill",
            name="Treadmill 3",
            recovered_at=datetime.now(UTC),
            down_for_s=125,
        ),
        EquipmentFaultEscalated(
            fault_id=down.fault_id,
            device_id=down.device_id,
            branch_id=BRANCH,
            kind="treadmill",
            name="Treadmill 3",
            reason="ping failed",
            detected_at=datetime.now(UTC),
        ),
        TaskJudged(
            task_id=uuid.uuid4(),
            helper_id=helper.user_id,
            branch_id=BRANCH,
            verdict="approved",
            score=0.93,
            payout_krw=15000,
        ),
    )
    await eventually(lambda: len(fcm.state.received) == 4, timeout=5)
    owner_titles = [notice["title"] for notice in await notifications.inbox(owner)]
    # The branch said its members read English: the owner's notices follow it.
    assert owner_titles == ["[gangnam] Treadmill 3 is back", "[gangnam] Branch profile saved"]
    [escalated] = await notifications.inbox(operator)
    assert (escalated["kind"], escalated["critical"]) == ("equipment_escalated", True)
    [paid] = await notifications.inbox(helper)
    assert paid["body"] == "작업이 승인되었습니다. 15,000원이 지급됩니다."


async def test_a_helper_hears_the_owners_decision_on_a_task(notifications, fcm):
    helper = person(Role.HELPER)
    await notifications.with_phone(helper)
    common = {
        "helper_id": helper.user_id,
        "branch_id": BRANCH,
        "task_type": "wash",
        "ai_outcome": "needs_review",
        "ai_overridden": False,
        "decided_by": uuid.uuid4(),
        "decided_at": datetime.now(UTC),
    }
    await notifications.announce(
        TaskConfirmed(task_id=uuid.uuid4(), decision="approved", final_label="done", reward_krw=3000, **common),
        TaskConfirmed(
            task_id=uuid.uuid4(),
            decision="rejected",
            final_label="not_done",
            reward_krw=0,
            reason="젖은 수건",
            **common,
        ),
    )
    await eventually(lambda: len(fcm.state.received) == 2, timeout=5)
    bodies = sorted(notice["body"] for notice in await notifications.inbox(helper))
    assert bodies == ["작업이 반려되었습니다: 젖은 수건", "작업이 승인되었습니다. 3,000원이 지급됩니다."]


async def test_owners_hear_of_a_task_waiting_past_the_review_sla(notifications, fcm):
    owner = person(Role.BRANCH_OWNER, (BRANCH,))
    other_owner = person(Role.BRANCH_OWNER, ("hongdae",))
    await notifications.with_phone(owner)
    await notifications.with_phone(other_owner)
    await notifications.announce(
        TaskReviewOverdue(
            task_id=uuid.uuid4(),
            helper_id=uuid.uuid4(),
            branch_id=BRANCH,
            task_type="wash",
            title="수건 세탁",
            judged_at=datetime.now(UTC) - timedelta(hours=4, minutes=5),
            waited_s=4 * 3600 + 300,
        )
    )
    await eventually(lambda: len(fcm.state.received) == 1, timeout=5)
    [notice] = await notifications.inbox(owner)
    assert notice["body"] == "'수건 세탁' 작업이 4h 5m 동안 검토를 기다리고 있습니다."
    assert await notifications.inbox(other_owner) == []


async def test_repeated_refusals_at_a_gate_make_one_notice(notifications, fcm):
    owner = person(Role.BRANCH_OWNER, (BRANCH,))
    await notifications.with_phone(owner)
    now = datetime.now(UTC)
    refusals = [
        AccessDenied(
            attempt_id=uuid.uuid4(),
            branch_id=BRANCH,
            gate_id="front-in",
            member_id=None,
            method="face",
            reason="face_not_recognised",
            decided_at=now + timedelta(seconds=n),
        )
        for n in range(8)
    ]
    await notifications.announce(*refusals[:4])
    await asyncio.sleep(0.2)
    assert await notifications.inbox(owner) == []  # four is not a pattern
    await notifications.announce(*refusals[4:])
    await eventually(lambda: len(fcm.state.received) == 1, timeout=5)
    await asyncio.sleep(0.2)
    [notice] = await notifications.inbox(owner)
    assert notice["kind"] == "gate_denials"
    assert "5" in notice["body"]


async def test_a_password_reset_carries_its_code_only_in_the_push_data(notifications, fcm):
    member = person(Role.CUSTOMER)
    await notifications.with_phone(member)
    code = "reset-" + uuid.uuid4().hex
    await notifications.announce(
        PasswordResetRequested(
            user_id=member.user_id,
            email="member@example.com",
            reset_token=code,
            expires_at=datetime.now(UTC) + timedelta(minutes=30),
        )
    )
    await eventually(lambda: len(fcm.state.received) == 1, timeout=5)
    [pushed] = fcm.state.received
    assert pushed.message["data"]["reset_token"] == code
    assert code not in str(pushed.message["notification"])
    [notice] = await notifications.inbox(member)
    assert code not in notice["body"]


async def test_inbox_read_unread_and_paging(notifications, fcm):
    owner = person(Role.BRANCH_OWNER, (BRANCH,))
    await notifications.with_phone(owner)
    await notifications.announce(*(fault(device_id=f"bike-{n}") for n in range(5)))
    await eventually(lambda: len(fcm.state.received) == 5, timeout=5)
    page = (await notifications.client.get("/inbox?limit=3", headers=owner.headers)).json()
    assert (len(page["messages"]), page["unread"]) == (3, 5)
    rest = (
        await notifications.client.get(f"/inbox?limit=3&before_id={page['next_before_id']}", headers=owner.headers)
    ).json()
    assert len(rest["messages"]) == 2
    ids = [message["id"] for message in page["messages"]]
    marked = await notifications.client.post("/inbox/read", json={"message_ids": ids}, headers=owner.headers)
    assert marked.json() == {"marked": 3}
    unread = (await notifications.client.get("/inbox?unread=true", headers=owner.headers)).json()
    assert (len(unread["messages"]), unread["unread"]) == (2, 2)


async def test_bad_requests_get_clear_refusals(notifications):
    owner = person(Role.BRANCH_OWNER, (BRANCH,))
    client = notifications.client
    bad_token = await client.put("/me/push-tokens", json={"token": "x", "platform": "android"}, headers=owner.headers)
    assert bad_token.status_code == 422
    bad_hours = await client.put(
        "/me/preferences", json={"quiet_start": "25:00", "quiet_end": "07:00"}, headers=owner.headers
    )
    assert bad_hours.status_code == 422
    # An id past what the table's column holds is the caller's mistake, not the driver's overflow.
    too_big = 2**63
    assert (await client.post("/inbox/read", json={"message_ids": [too_big]}, headers=owner.headers)).status_code == 422
    assert (await client.get(f"/inbox?before_id={too_big}", headers=owner.headers)).status_code == 422
    half = await client.put("/me/preferences", json={"quiet_start": "22:00"}, headers=owner.headers)
    assert half.status_code == 422
    zone = await client.put("/me/preferences", json={"timezone": "Mars/Olympus"}, headers=owner.headers)
    assert zone.status_code == 422
    assert (await client.get("/inbox")).status_code == 401
    device = {
        "authorization": "Bearer "
        + __import__("tests.support.tokens", fromlist=["issuer"])
        .issuer()
        .issue("device:kiosk-1", [Role.DEVICE], [BRANCH])
    }
    assert (await client.get("/inbox", headers=device)).status_code == 403
    missing = await client.delete("/me/push-tokens/not-mine-token-000000", headers=owner.headers)
    assert missing.status_code == 404


async def test_running_news_reaches_friends_racers_and_walkers(notifications, fcm):
    from datetime import date

    from contracts import RaceFinished, RacePlacing, RunStarted, StepRankChanged

    runner, friend, second = person(Role.CUSTOMER), person(Role.CUSTOMER), person(Role.CUSTOMER)
    await notifications.with_phone(friend, locale="en")
    await notifications.with_phone(second)
    race_id = uuid.uuid4()
    await notifications.announce(
        RunStarted(
            run_id=uuid.uuid4(), user_id=runner.user_id, started_at=datetime.now(UTC), friends=(friend.user_id,)
        ),
        RaceFinished(
            race_id=race_id,
            mode="distance",
            target=5000,
            finished_at=datetime.now(UTC),
            placings=(
                RacePlacing(user_id=runner.user_id, rank=1, distance_m=5000, finish_s=1500),
                RacePlacing(user_id=second.user_id, rank=2, distance_m=5000, finish_s=1600),
            ),
        ),
        StepRankChanged(user_id=friend.user_id, overtaken_by=runner.user_id, day=date.today(), new_rank=2, steps=9500),
    )
    await eventually(lambda: len(fcm.state.received) == 3, timeout=5)
    titles = [notice["title"] for notice in await notifications.inbox(friend)]
    assert titles == ["Overtaken on steps", "Your friend is running"]
    [result] = await notifications.inbox(second)
    assert result["body"] == "2위로 완주했어요. 기록 26:40."  # gun time; this placing has no chip time


async def test_a_retired_devices_fault_is_closed_for_whoever_was_told_of_it(notifications, fcm):
    owner = person(Role.BRANCH_OWNER, (BRANCH,))
    operator = person(Role.OPERATOR)
    owner_and_operator = person(Role.BRANCH_OWNER, (BRANCH,), also=(Role.OPERATOR,))
    other_owner = person(Role.BRANCH_OWNER, ("hongdae",))
    for who in (owner, operator, owner_and_operator, other_owner):
        await notifications.with_phone(who)

    def withdrawn(name: str, *, escalated: bool) -> EquipmentFaultWithdrawn:
        return EquipmentFaultWithdrawn(
            fault_id=uuid.uuid4(),
            device_id=name.lower().replace(" ", "-"),
            branch_id=BRANCH,
            kind="treadmill",
            name=name,
            withdrawn_at=datetime.now(UTC),
            escalated=escalated,
        )

    await notifications.announce(withdrawn("Treadmill 3", escalated=False), withdrawn("Front door", escalated=True))
    await eventually(lambda: len(fcm.state.received) == 5, timeout=5)
    await asyncio.sleep(0.3)
    assert len(fcm.state.received) == 5
    for who in (owner, owner_and_operator):  # once each, whichever roles they hold
        titles = sorted(notice["title"] for notice in await notifications.inbox(who))
        assert titles == ["[gangnam] Front door 고장 종료", "[gangnam] Treadmill 3 고장 종료"]
    [told] = await notifications.inbox(operator)  # only the fault they had been handed
    # As urgent as the page it stands down: it does not wait for the quiet hours.
    assert (told["kind"], told["critical"]) == ("equipment_withdrawn", True)
    assert "Front door" in told["title"]
    assert await notifications.inbox(other_owner) == []
