"""Walking together, friends and shared step goals reach phones: running and notification
on their own PostgreSQL databases with the real RabbitMQ between them, the FCM stand-in
behind notification. Each event tells the right people once, in their language."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from common.migrations import upgrade
from common.security import Role
from contracts import OutingInvited, RaceFinished, RacePlacing
from notification.app import create_app as create_notification
from notification.settings import NotificationSettings
from running.app import create_app as create_running
from tests.notification.conftest import person
from tests.running.conftest import Running, member, running_settings
from tests.support import tokens
from tests.support.apps import asgi_client
from tests.support.waiting import eventually

pytestmark = pytest.mark.slow


async def test_invitations_friends_and_step_goals_push_through_the_broker(
    tmp_path, fcm, rabbitmq_url, postgres, namespace, broker_cleanup
):
    bus = {"broker_url": rabbitmq_url, "bus_namespace": namespace, "outbox_poll_interval_s": 0.1}
    running_db, notification_db = postgres.create("running"), postgres.create("notification")
    upgrade("running", running_db)
    upgrade("notification", notification_db)
    notification = create_notification(
        NotificationSettings(
            environment="test",
            data_dir=tmp_path,
            database_urls={"notification": notification_db},
            fcm_project_id=fcm.account.project_id,
            fcm_endpoint=fcm.url,
            fcm_token_uri=fcm.account.token_uri,
            fcm_service_account_file=tmp_path / "service-account.json",
            notification_poll_interval_s=0.05,
            **bus,
        ),
        keys=tokens.key_cache(),
    )
    running_app = create_running(
        running_settings(tmp_path, database_urls={"running": running_db}, **bus), keys=tokens.key_cache()
    )
    host, walker, shy = member(), member(), member()
    async with asgi_client(notification) as inbox_api, asgi_client(running_app) as client:
        running = Running(running_app, client, running_app.state.kernel.settings)
        phones = {}
        for who, locale in ((host, "ko"), (walker, "en"), (shy, "ko")):
            phones[who.user_id] = token = f"fcm-{uuid.uuid4().hex}"
            put = await inbox_api.put("/me/push-tokens", json={"token": token, "platform": "ios"}, headers=who.headers)
            assert put.status_code == 204
            prefs = await inbox_api.put("/me/preferences", json={"locale": locale}, headers=who.headers)
            assert prefs.status_code == 200, prefs.text

        await running.befriend(host, walker)  # the host asked; the walker accepted
        await running.befriend(host, shy)
        created = await client.post(
            "/v1/outings",
            json={"title": "Han river walk", "members": [str(walker.user_id), str(shy.user_id)], "minutes": 60},
            headers=host.headers,
        )
        outing_id = created.json()["outing_id"]
        assert (await client.post(f"/v1/outings/{outing_id}/accept", headers=walker.headers)).status_code == 204
        assert (await client.post(f"/v1/outings/{outing_id}/start", headers=host.headers)).status_code == 204
        assert (await client.delete(f"/v1/outings/{outing_id}", headers=host.headers)).status_code == 204
        goal = await client.post(
            "/v1/steps/goals",
            json={"title": "Ten thousand together", "members": [str(walker.user_id)], "period": "day", "target": 10000},
            headers=host.headers,
        )
        assert goal.status_code == 201, goal.text
        today = datetime.now(UTC).date().isoformat()
        for who, steps in ((host, 6000), (walker, 4500)):
            body = {"device_id": "watch-1", "steps": steps}
            assert (await client.put(f"/v1/steps/{today}", json=body, headers=who.headers)).status_code == 200

        async def titles(who) -> list[str]:
            response = await inbox_api.get("/inbox", headers=who.headers)
            return sorted(message["title"] for message in response.json()["messages"])

        expected = {
            host.user_id: ["오늘의 걸음 목표 달성", "친구 요청 수락", "친구 요청 수락"],
            walker.user_id: [
                "Invitation to walk together",
                "Today's step goal reached",
                "Walk together ended",
                "Walk together started",
            ],
            shy.user_id: ["함께 걷기 초대"],
        }
        await eventually(lambda: len(fcm.state.received) >= 8, timeout=15)
        for who in (host, walker, shy):
            assert await titles(who) == expected[who.user_id]
        pushed = sorted((push.token, push.message["notification"]["title"]) for push in fcm.state.received)
        assert pushed == sorted((phones[user], title) for user, titles in expected.items() for title in titles)
        bodies = {
            m["title"]: m["body"] for m in (await inbox_api.get("/inbox", headers=walker.headers)).json()["messages"]
        }
        assert (
            bodies["Invitation to walk together"] == "You are invited to 'Han river walk'. Let them know if you join."
        )
        assert "10,500 steps" in bodies["Today's step goal reached"]


async def test_a_redelivered_invitation_tells_once_and_race_results_carry_chip_time(notifications, fcm):
    host, walker, racer = (person(Role.CUSTOMER) for _ in range(3))
    await notifications.with_phone(walker, locale="en")
    await notifications.with_phone(racer)
    invited = OutingInvited(
        outing_id=uuid.uuid4(),
        host_id=host.user_id,
        title="Morning walk",
        invitees=(walker.user_id,),
        # An invitation that expires before it could be pushed (quiet hours) is not pushed.
        expires_at=datetime.now(UTC) + timedelta(minutes=30),
    )
    result = RaceFinished(
        race_id=uuid.uuid4(),
        mode="distance",
        target=5000,
        finished_at=datetime.now(UTC),
        placings=(
            RacePlacing(user_id=racer.user_id, rank=1, distance_m=5000, finish_s=1530.4, chip_s=1500.2),
            RacePlacing(user_id=walker.user_id, rank=2, distance_m=5000, finish_s=1601.0),  # no chip: older publisher
        ),
    )
    await notifications.announce(invited, invited, result)  # the broker's at-least-once
    await eventually(lambda: len(fcm.state.received) == 3, timeout=5)
    [first] = await notifications.inbox(racer)
    assert first["body"] == "1위로 완주했어요. 기록 25:30, 칩 기록 25:00."
    walker_inbox = {message["title"]: message["body"] for message in await notifications.inbox(walker)}
    assert walker_inbox == {
        "Invitation to walk together": "You are invited to 'Morning walk'. Let them know if you join.",
        "Race results": "You finished #2. Gun time 26:41.",
    }
    chip = next(push for push in fcm.state.received if push.message["data"].get("rank") == "1")
    assert chip.message["data"]["chip_s"] == "1500.2"
