"""Shared step goals (progress, one event when reached) and a member's step statistics."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from contracts import StepGoalReached
from tests.running.conftest import member
from tests.support.waiting import eventually


async def test_a_shared_weekly_goal_is_reached_once(running):
    me, friend, stranger = member(), member(), member()
    await running.befriend(me, friend)
    refused = await running.client.post(
        "/v1/steps/goals",
        json={"title": "x", "members": [str(stranger.user_id)], "period": "week", "target": 50_000},
        headers=me.headers,
    )
    assert refused.status_code == 403
    created = await running.client.post(
        "/v1/steps/goals",
        json={"title": "Office week", "members": [str(friend.user_id)], "period": "week", "target": 30_000},
        headers=me.headers,
    )
    assert created.status_code == 201, created.text
    goal = created.json()
    assert (goal["steps"], goal["reached"]) == (0, False)
    today = datetime.now(UTC).date()
    monday = today - timedelta(days=today.weekday())

    async def put(who, day, steps, device="phone"):
        response = await running.client.put(
            f"/v1/steps/{day.isoformat()}", json={"device_id": device, "steps": steps}, headers=who.headers
        )
        assert response.status_code == 200, response.text

    await put(me, monday, 12_000)
    await put(me, monday, 11_000, device="watch")  # the same steps counted twice: the larger wins
    await put(friend, today, 9_000)
    [progress] = (await running.client.get("/v1/steps/goals", headers=friend.headers)).json()
    assert (progress["steps"], progress["reached"], progress["progress"]) == (21_000, False, 0.7)
    await put(friend, today, 18_500)  # the re-upload of today's count crosses the line
    await put(me, today, 4_000)  # and more steps after it: no second event
    await eventually(lambda: len(running.of(StepGoalReached)) == 1, timeout=5)
    await asyncio.sleep(0.3)
    [event] = running.of(StepGoalReached)
    assert (event.period, event.period_start, event.target) == ("week", monday, 30_000)
    assert set(event.members) == {me.user_id, friend.user_id}
    [progress] = (await running.client.get("/v1/steps/goals", headers=me.headers)).json()
    assert progress["reached"] is True


async def test_step_statistics_give_the_week_month_and_streaks(running):
    me = member()
    today = datetime.now(UTC).date()
    # Ten days of 9,000 until yesterday, a gap before them, and a slow start today.
    for back in range(1, 11):
        day = today - timedelta(days=back)
        await running.client.put(f"/v1/steps/{day}", json={"device_id": "p", "steps": 9_000}, headers=me.headers)
    await running.client.put(
        f"/v1/steps/{today - timedelta(days=13)}", json={"device_id": "p", "steps": 20_000}, headers=me.headers
    )
    await running.client.put(f"/v1/steps/{today}", json={"device_id": "p", "steps": 2_000}, headers=me.headers)
    stats = (await running.client.get("/v1/steps/stats", headers=me.headers)).json()
    assert stats["streak"] == {"min_steps": 8000, "current_days": 10, "longest_days": 10}
    monday = today - timedelta(days=today.weekday())
    expected_week = 2_000 + 9_000 * min(10, (today - monday).days)
    assert stats["week"]["steps"] == expected_week
    in_month = [today - timedelta(days=back) for back in (*range(0, 11), 13)]
    month_steps = sum(
        (2_000 if day == today else 20_000 if day == today - timedelta(days=13) else 9_000)
        for day in in_month
        if day.month == today.month
    )
    assert stats["month"]["steps"] == month_steps
    strict = (await running.client.get("/v1/steps/stats?streak_min=10000", headers=me.headers)).json()
    assert strict["streak"]["current_days"] == 0
    assert strict["streak"]["longest_days"] == 1
