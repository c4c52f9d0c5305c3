"""Finding a friend by the code they gave you, on PostgreSQL: a request, its acceptance,
the names each chose and the friend's live run to watch; codes that cannot be guessed,
typed loosely, renewed, and forgotten with the account."""

from __future__ import annotations

import re

from contracts import FriendRequestAccepted
from running.accounts import forget_user
from running.friends import MISSES_PER_DAY
from tests.running.conftest import member, receive
from tests.support.waiting import eventually


async def test_a_member_finds_another_by_code_and_they_become_friends_who_may_watch(open_running, postgres):
    async with open_running(database_urls={"running": postgres.create("running")}) as running:
        ana, bo = member(), member()
        client = running.client
        code = (await client.get("/v1/friends/code", headers=ana.headers)).json()["code"]
        assert re.fullmatch(r"[0-9A-HJKMNP-TV-Z]{5}-[0-9A-HJKMNP-TV-Z]{5}", code), code
        assert (await client.get("/v1/friends/code", headers=ana.headers)).json()["code"] == code  # kept
        named = await client.put("/v1/profile", json={"display_name": "Ana"}, headers=ana.headers)
        assert named.status_code == 200, named.text

        typed = f" {code.lower().replace('-', ' ')} ".replace("0", "o")  # as read out over the phone
        asked = await client.post("/v1/friends/requests", json={"code": typed}, headers=bo.headers)
        assert asked.status_code == 200, asked.text
        assert asked.json() == {"status": "requested", "user_id": str(ana.user_id), "name": "Ana"}
        mine = (await client.get("/v1/friends", headers=ana.headers)).json()
        assert mine["incoming"] == [str(bo.user_id)]
        assert mine["friends"] == []
        assert mine["names"] == {str(bo.user_id): f"Runner {str(bo.user_id)[:4].upper()}"}  # never an e-mail
        theirs = (await client.get("/v1/friends", headers=bo.headers)).json()
        assert theirs["requested"] == [str(ana.user_id)]
        assert theirs["names"][str(ana.user_id)] == "Ana"

        accepted = await client.post(f"/v1/friends/{bo.user_id}/accept", headers=ana.headers)
        assert accepted.status_code == 204, accepted.text
        await eventually(lambda: len(running.of(FriendRequestAccepted)) == 1, timeout=5)
        [told] = running.of(FriendRequestAccepted)
        assert (told.user_id, told.friend_id) == (bo.user_id, ana.user_id)

        async with running.socket("/ws/runs", ana) as socket:
            run_id = (await receive(socket, "started"))["run_id"]
            theirs = (await client.get("/v1/friends", headers=bo.headers)).json()
            assert theirs["friends"] == [str(ana.user_id)]
            assert theirs["live"] == {str(ana.user_id): run_id}
            async with running.socket(f"/ws/runs/{run_id}/watch", bo) as watcher:
                await receive(watcher, "watching")
        # Asking again by code changes nothing; removing ends it both ways.
        again = await client.post("/v1/friends/requests", json={"code": code}, headers=bo.headers)
        assert again.json()["status"] == "accepted"
        assert (await client.delete(f"/v1/friends/{ana.user_id}", headers=bo.headers)).status_code == 204
        assert (await client.get("/v1/friends", headers=ana.headers)).json()["friends"] == []


async def test_codes_cannot_be_guessed_and_a_renewed_code_finds_nobody(open_running, postgres):
    async with open_running(database_urls={"running": postgres.create("running")}) as running:
        holder, seeker = member(), member()
        client = running.client
        old = (await client.get("/v1/friends/code", headers=holder.headers)).json()["code"]
        new = (await client.post("/v1/friends/code", headers=holder.headers)).json()["code"]
        assert new != old
        gone = await client.post("/v1/friends/requests", json={"code": old}, headers=seeker.headers)
        assert gone.status_code == 404
        assert gone.json() == {"detail": "no runner has that friend code"}

        for bad in ("ABC", "ABCDE-FGHIU", "<script>", "A" * 21):
            refused = await client.post("/v1/friends/requests", json={"code": bad}, headers=seeker.headers)
            assert refused.status_code == 422, (bad, refused.text)
        assert (await client.post("/v1/friends/requests", json={}, headers=seeker.headers)).status_code == 422
        own = await client.post("/v1/friends/requests", json={"code": new}, headers=holder.headers)
        assert own.status_code == 409

        # A miss looks the same whatever the code; after the day's allowance, even a right
        # one is refused, so guessing is no way to find members.
        for _ in range(MISSES_PER_DAY - 1):
            miss = await client.post("/v1/friends/requests", json={"code": "ZZZZZ-ZZZZZ"}, headers=seeker.headers)
            assert miss.json() == gone.json()
        stopped = await client.post("/v1/friends/requests", json={"code": new}, headers=seeker.headers)
        assert stopped.status_code == 429
        other = member()  # another member's allowance is their own
        found = await client.post("/v1/friends/requests", json={"code": new}, headers=other.headers)
        assert found.status_code == 200, found.text
        assert (await client.post("/v1/friends/requests", json={"code": new})).status_code == 401


async def test_a_deleted_account_takes_its_code_with_it(open_running, postgres):
    async with open_running(database_urls={"running": postgres.create("running")}) as running:
        leaver, seeker = member(), member()
        code = (await running.client.get("/v1/friends/code", headers=leaver.headers)).json()["code"]
        async with running.app.state.kernel.db.sessions() as session, session.begin():
            await forget_user(session, user_id=leaver.user_id)  # what UserDeleted does
        lost = await running.client.post("/v1/friends/requests", json={"code": code}, headers=seeker.headers)
        assert lost.status_code == 404
