"""branch_owner: profiles and their events, the review queue, reviews, preferences, and
that an owner acts only for the branches in their token."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from common.security import Role
from contracts import (
    AccessGranted,
    BranchInfoCreated,
    BranchInfoUpdated,
    BranchPreferenceCreated,
    ReviewPosted,
    TaskConfirmed,
    TaskReviewOverdue,
)
from tests.branch_owner.conftest import BRANCH
from tests.support import tokens
from tests.support.waiting import eventually

PROFILE = {
    "name": "SmartGym Gangnam",
    "address": "Seoul, Gangnam-gu, Teheran-ro 1",
    "lat": 37.498,
    "lon": 127.028,
    "facilities": ["shower", "parking"],
    "equipment": {"treadmill": 8, "rack": 2},
    "prices": [{"name": "1 month", "amount_krw": 59000}],
}


async def put_profile(console, **changes) -> None:
    response = await console.client.put(f"/v1/branches/{BRANCH}", json={**PROFILE, **changes}, headers=console.owner)
    assert response.status_code in (200, 201), response.text


async def test_a_profile_is_published_whole_on_create_and_on_each_change(console):
    created = await console.client.put(f"/v1/branches/{BRANCH}", json=PROFILE, headers=console.owner)
    assert created.status_code == 201
    assert created.json()["open_24h"] is True
    await put_profile(console)  # the same again: nothing to tell
    hours = [{"day": day, "open": "06:00", "close": "23:00"} for day in ("mon", "tue", "wed", "thu", "fri")]
    await put_profile(console, hours=hours, prices=[{"name": "1 month", "amount_krw": 55000}])
    await eventually(lambda: len(console.of(BranchInfoUpdated)) == 1)
    [first] = console.of(BranchInfoCreated)
    [second] = console.of(BranchInfoUpdated)
    assert (first.name, first.lat, first.lon, first.open_24h, first.revision) == (
        "SmartGym Gangnam",
        37.498,
        127.028,
        True,
        1,
    )
    assert first.facilities == ("parking", "shower")
    assert first.equipment == {"treadmill": 8, "rack": 2}
    assert (second.revision, second.open_24h, second.prices[0].amount_krw) == (2, False, 55000)
    assert second.hours[0].open == "06:00"


async def test_profiles_refuse_bad_input_and_other_owners(console):
    bad = await console.client.put(f"/v1/branches/{BRANCH}", json={**PROFILE, "lat": 123}, headers=console.owner)
    assert bad.status_code == 422
    bad = await console.client.put(
        f"/v1/branches/{BRANCH}", json={**PROFILE, "facilities": ["Shower Room"]}, headers=console.owner
    )
    assert bad.status_code == 422
    bad = await console.client.put(f"/v1/branches/{BRANCH}", json={**PROFILE, "owner": "me"}, headers=console.owner)
    assert bad.status_code == 422
    typo = {**PROFILE, "prices": [{"name": "1 month", "amount_krw": 5_900_000_000}]}
    assert (await console.client.put(f"/v1/branches/{BRANCH}", json=typo, headers=console.owner)).status_code == 422
    stranger = tokens.bearer(uuid.uuid4(), [Role.BRANCH_OWNER], ("hongdae",))
    assert (await console.client.put(f"/v1/branches/{BRANCH}", json=PROFILE, headers=stranger)).status_code == 403
    member = tokens.bearer(uuid.uuid4(), [Role.CUSTOMER])
    assert (await console.client.put(f"/v1/branches/{BRANCH}", json=PROFILE, headers=member)).status_code == 403
    operator = tokens.bearer(uuid.uuid4(), [Role.OPERATOR])
    assert (await console.client.put(f"/v1/branches/{BRANCH}", json=PROFILE, headers=operator)).status_code == 201
    mine = (await console.client.get("/v1/branches", headers=stranger)).json()
    assert mine == []
    assert [row["branch_id"] for row in (await console.client.get("/v1/branches", headers=operator)).json()] == [BRANCH]


async def test_the_queue_shows_verdicts_and_decisions_tell_helper_and_training(console):
    unsure = await console.judged(outcome="needs_review")
    failed = await console.judged(outcome="fail")
    passed = await console.judged(outcome="pass")
    elsewhere = await console.judged(branch_id="hongdae")

    async def pending() -> list:
        page = await console.client.get(f"/v1/branches/{BRANCH}/queue", headers=console.owner)
        return page.json()["items"]

    await eventually(lambda: _len_is(pending, 3))
    items = await pending()
    assert {item["task_id"] for item in items} == {str(unsure.task_id), str(failed.task_id), str(passed.task_id)}
    blurred = next(item for item in items if item["task_id"] == str(failed.task_id))
    assert blurred["reasons"] == [{"code": "blurred", "message": "photo 1 is blurred"}]
    assert blurred["photo_urls"] == [f"/api/helper/v1/tasks/{failed.task_id}/photos/0"]

    # Overruling the AI needs a reason; so does any rejection.
    no_reason = await console.client.post(
        f"/v1/branches/{BRANCH}/queue/{failed.task_id}/decision", json={"decision": "approve"}, headers=console.owner
    )
    assert no_reason.status_code == 422
    overrule = await console.client.post(
        f"/v1/branches/{BRANCH}/queue/{failed.task_id}/decision",
        json={"decision": "approve", "reason": "the towels are clean; the photo is just soft"},
        headers=console.owner,
    )
    assert overrule.status_code == 200
    bulk = await console.client.post(
        f"/v1/branches/{BRANCH}/queue/decisions",
        json={
            "decision": "reject",
            "reason": "towels still wet",
            "task_ids": [str(unsure.task_id), str(passed.task_id), str(elsewhere.task_id), str(failed.task_id)],
        },
        headers=console.owner,
    )
    results = {row["task_id"]: row for row in bulk.json()}
    assert results[str(unsure.task_id)]["result"] == "rejected"
    assert results[str(passed.task_id)]["result"] == "rejected"
    assert results[str(elsewhere.task_id)]["ok"] is False  # another branch's task
    assert results[str(failed.task_id)]["result"] == "already approved"
    await eventually(lambda: len(console.of(TaskConfirmed)) == 3)
    by_task = {event.task_id: event for event in console.of(TaskConfirmed)}
    assert (by_task[failed.task_id].decision, by_task[failed.task_id].final_label) == ("approved", "done")
    assert by_task[failed.task_id].ai_overridden is True
    assert by_task[failed.task_id].reward_krw == 3000
    assert (by_task[passed.task_id].ai_overridden, by_task[passed.task_id].reward_krw) == (True, 0)
    assert by_task[unsure.task_id].ai_overridden is False
    assert by_task[unsure.task_id].final_label == "not_done"
    assert await pending() == []
    decided = (await console.client.get(f"/v1/branches/{BRANCH}/queue?status=rejected", headers=console.owner)).json()
    assert len(decided["items"]) == 2
    stranger = tokens.bearer(uuid.uuid4(), [Role.BRANCH_OWNER], ("hongdae",))
    assert (await console.client.get(f"/v1/branches/{BRANCH}/queue", headers=stranger)).status_code == 403
    # The same verdict delivered twice is one queue entry.
    await console.deliver(unsure)
    assert (
        len(
            (await console.client.get(f"/v1/branches/{BRANCH}/queue?status=rejected", headers=console.owner)).json()[
                "items"
            ]
        )
        == 2
    )


async def _len_is(fetch, n: int) -> bool:
    return len(await fetch()) == n


async def test_a_task_waiting_past_the_sla_raises_one_reminder(console):
    late = await console.judged(age=timedelta(minutes=5))
    await console.judged()  # fresh: within the SLA of one minute
    await eventually(lambda: len(console.of(TaskReviewOverdue)) == 1)
    [reminder] = console.of(TaskReviewOverdue)
    assert reminder.task_id == late.task_id
    assert reminder.waited_s >= 300
    page = (await console.client.get(f"/v1/branches/{BRANCH}/queue", headers=console.owner)).json()
    assert [item["overdue"] for item in page["items"]] == [True, False]
    import asyncio

    await asyncio.sleep(0.5)  # several sweeps later: still one
    assert len(console.of(TaskReviewOverdue)) == 1


async def test_members_review_once_edit_and_owners_reply(console):
    await put_profile(console)
    member_id = uuid.uuid4()
    member = tokens.bearer(member_id, [Role.CUSTOMER])
    first = await console.client.put(
        f"/v1/branches/{BRANCH}/reviews/mine", json={"rating": 4, "text": "샤워실이 깨끗해요"}, headers=member
    )
    assert first.status_code == 200, first.text
    edit = await console.client.put(
        f"/v1/branches/{BRANCH}/reviews/mine",
        json={"rating": 5, "text": "샤워실이 깨끗하고 주차도 편해요"},
        headers=member,
    )
    assert edit.json()["id"] == first.json()["id"]
    assert edit.json()["revision"] == 2
    await eventually(lambda: len(console.of(ReviewPosted)) == 2)
    posted = console.of(ReviewPosted)[-1]
    assert (posted.review_id, posted.branch_id, posted.rating, posted.revision) == (
        uuid.UUID(first.json()["id"]),
        BRANCH,
        5,
        2,
    )
    bad = await console.client.put(
        f"/v1/branches/{BRANCH}/reviews/mine", json={"rating": 6, "text": "x"}, headers=member
    )
    assert bad.status_code == 422
    helper = tokens.bearer(uuid.uuid4(), [Role.HELPER])
    assert (
        await console.client.put(f"/v1/branches/{BRANCH}/reviews/mine", json={"rating": 1, "text": "x"}, headers=helper)
    ).status_code == 403
    review_id = first.json()["id"]
    reply = await console.client.post(
        f"/v1/reviews/{review_id}/reply", json={"text": "감사합니다"}, headers=console.owner
    )
    assert reply.json()["reply"] == "감사합니다"
    stranger = tokens.bearer(uuid.uuid4(), [Role.BRANCH_OWNER], ("hongdae",))
    assert (
        await console.client.post(f"/v1/reviews/{review_id}/reply", json={"text": "spam"}, headers=stranger)
    ).status_code == 403
    # Three people report it: members no longer see it, the owner still does.
    for _ in range(3):
        reporter = tokens.bearer(uuid.uuid4(), [Role.CUSTOMER])
        report = await console.client.post(
            f"/v1/reviews/{review_id}/reports", json={"reason": "abuse"}, headers=reporter
        )
        assert report.status_code == 201
    again = await console.client.post(f"/v1/reviews/{review_id}/reports", json={"reason": "abuse"}, headers=reporter)
    assert again.status_code == 409
    assert (await console.client.get(f"/v1/branches/{BRANCH}/reviews", headers=member)).json() == []
    staff_view = (await console.client.get(f"/v1/branches/{BRANCH}/reviews", headers=console.owner)).json()
    assert staff_view[0]["reports"] == 3


async def test_preferences_come_from_reviews_entries_and_equipment(console):
    await put_profile(console, facilities=["sauna"], equipment={"treadmill": 4})
    for index, text in enumerate(["샤워실 최고, 주차 편함", "shower is great", "조용해서 좋아요"]):
        member = tokens.bearer(uuid.uuid4(), [Role.CUSTOMER])
        response = await console.client.put(
            f"/v1/branches/{BRANCH}/reviews/mine", json={"rating": 4 + index % 2, "text": text}, headers=member
        )
        assert response.status_code == 200
    morning = datetime(2026, 11, 24, 6, 30, tzinfo=UTC) - timedelta(hours=9)  # 06:30 in Seoul, a Tuesday
    for minute in range(8):
        await console.deliver(
            AccessGranted(
                attempt_id=uuid.uuid4(),
                branch_id=BRANCH,
                gate_id="g1",
                direction="in",
                member_id=uuid.uuid4(),
                method="face",
                decided_at=morning + timedelta(minutes=minute),
            )
        )
    await console.deliver(
        AccessGranted(
            attempt_id=uuid.uuid4(),
            branch_id=BRANCH,
            gate_id="g1",
            direction="in",
            member_id=uuid.uuid4(),
            method="qr",
            decided_at=morning + timedelta(hours=12),
        )
    )
    response = await console.client.post(f"/v1/branches/{BRANCH}/preference-profile", headers=console.owner)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["facility_tags"] == ["cardio", "sauna", "shower"]  # parking: one mention only
    assert body["usage_tags"] == ["early_bird"]
    await eventually(lambda: len(console.of(BranchPreferenceCreated)) == 1)
    [event] = console.of(BranchPreferenceCreated)
    assert event.topics == ("cardio", "sauna", "shower", "early_bird")
    assert event.created_by == console.owner_id
    member = tokens.bearer(uuid.uuid4(), [Role.CUSTOMER])
    assert (await console.client.post(f"/v1/branches/{BRANCH}/preference-profile", headers=member)).status_code == 403
