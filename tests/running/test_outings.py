"""Walking together: invitations answered or expired, the group's positions, and the
outing ending for everyone; the events notification turns into pushes."""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.exceptions import ConnectionClosed

from contracts import FriendRequestAccepted, OutingEnded, OutingInvited, OutingStarted
from tests.running.conftest import member, receive, track_points
from tests.support.waiting import eventually


async def test_invitations_are_answered_and_the_outing_ends_when_all_leave(running):
    host, walker, shy = member(), member(), member()
    for friend in (walker, shy):
        await running.befriend(host, friend)
    await eventually(lambda: len(running.of(FriendRequestAccepted)) == 2, timeout=5)
    assert {event.user_id for event in running.of(FriendRequestAccepted)} == {host.user_id}

    created = await running.client.post(
        "/v1/outings",
        json={"title": "Evening walk", "members": [str(walker.user_id), str(shy.user_id)], "minutes": 60},
        headers=host.headers,
    )
    outing_id, path = created.json()["outing_id"], created.json()["path"]
    await eventually(lambda: len(running.of(OutingInvited)) == 1, timeout=5)
    assert set(running.of(OutingInvited)[0].invitees) == {walker.user_id, shy.user_id}
    # Not in before accepting; a decline keeps them out.
    async with running.socket(path, walker) as early:
        with pytest.raises(ConnectionClosed) as closed:
            await early.recv()
        assert closed.value.rcvd.reason == "accept the invitation first"
    assert (await running.client.post(f"/v1/outings/{outing_id}/accept", headers=walker.headers)).status_code == 204
    assert (await running.client.post(f"/v1/outings/{outing_id}/decline", headers=shy.headers)).status_code == 204
    assert (await running.client.post(f"/v1/outings/{outing_id}/start", headers=walker.headers)).status_code == 404
    assert (await running.client.post(f"/v1/outings/{outing_id}/start", headers=host.headers)).status_code == 204
    await eventually(lambda: len(running.of(OutingStarted)) == 1, timeout=5)
    assert set(running.of(OutingStarted)[0].members) == {host.user_id, walker.user_id}
    listing = (await running.client.get("/v1/outings", headers=shy.headers)).json()
    assert [item["answer"] for item in listing] == ["declined"]

    points = track_points(seconds=10)
    async with running.socket(path, host) as mine, running.socket(path, walker) as theirs:
        await receive(mine, "joined")
        await receive(theirs, "joined")
        async with running.socket(path, shy) as refused:
            with pytest.raises(ConnectionClosed):
                await refused.recv()
        for index in range(3):
            await mine.send(json.dumps(points[index]))
            await theirs.send(json.dumps({**points[index], "lat": points[index]["lat"] + 0.0001}))
            await asyncio.sleep(0.05)
        group = await receive(theirs, "group")
        while len(group["members"]) < 2:
            group = await receive(theirs, "group")
        assert {entry["user_id"] for entry in group["members"]} == {str(host.user_id), str(walker.user_id)}
        await theirs.send(json.dumps({"type": "leave"}))
        with pytest.raises(ConnectionClosed) as gone:
            await receive(theirs, "never")
        assert gone.value.rcvd.reason == "you left the outing"
        # The host is told who left, and the group's next snapshot no longer has them.
        assert (await receive(mine, "left"))["user_id"] == str(walker.user_id)
        await mine.send(json.dumps(points[3]))
        group = await receive(mine, "group")
        assert [entry["user_id"] for entry in group["members"]] == [str(host.user_id)]
        await mine.send(json.dumps({"type": "leave"}))  # the last one out
        closed_for_host = await receive(mine, "closed")
    assert closed_for_host["reason"] == "all_left"
    await eventually(lambda: len(running.of(OutingEnded)) == 1, timeout=5)
    assert running.of(OutingEnded)[0].reason == "all_left"


async def test_an_invitation_expires_and_the_host_ends_it_for_everyone(open_running):
    async with open_running(running_outing_invite_s=1) as running:
        host, late, prompt = member(), member(), member()
        for friend in (late, prompt):
            await running.befriend(host, friend)
        created = await running.client.post(
            "/v1/outings",
            json={"title": "Park", "members": [str(late.user_id), str(prompt.user_id)], "minutes": 30},
            headers=host.headers,
        )
        outing_id, path = created.json()["outing_id"], created.json()["path"]
        assert (await running.client.post(f"/v1/outings/{outing_id}/accept", headers=prompt.headers)).status_code == 204
        await asyncio.sleep(1.2)
        expired = await running.client.post(f"/v1/outings/{outing_id}/accept", headers=late.headers)
        assert expired.status_code == 409
        assert expired.json()["detail"] == "the invitation has expired"
        listing = (await running.client.get("/v1/outings", headers=late.headers)).json()
        assert [item["answer"] for item in listing] == ["expired"]
        async with running.socket(path, prompt) as theirs:
            await receive(theirs, "joined")
            ended = await running.client.delete(f"/v1/outings/{outing_id}", headers=host.headers)
            assert ended.status_code == 204
            assert (await receive(theirs, "closed"))["reason"] == "host_ended"
        await eventually(lambda: len(running.of(OutingEnded)) == 1, timeout=5)
        assert running.of(OutingEnded)[0].reason == "host_ended"
