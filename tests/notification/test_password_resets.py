"""Reset codes: delivered once (push data, or SMS through the Twilio-speaking stand-in for
a phone-only account), never kept after sending, held by quiet hours like any routine
notice, and not sent at all once expired."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from common.security import Role
from contracts import PasswordResetRequestedV2
from notification.models import Delivery
from notification.settings import NotificationSettings
from notification.sms_sim import SmsSimState
from notification.sms_sim import create_app as create_sms_app
from tests.notification.conftest import person
from tests.support.apps import free_port, serving
from tests.support.waiting import eventually


@pytest.fixture
async def sms():
    port = free_port()
    defaults = NotificationSettings()
    state = SmsSimState(account_sid=defaults.sms_account_sid, auth_token=defaults.sms_auth_token.get_secret_value())
    async with serving(create_sms_app(state), port):
        yield f"http://127.0.0.1:{port}", state


def reset(user_id: uuid.UUID, *, phone: str | None = None, expires_in: timedelta = timedelta(minutes=30)):
    return PasswordResetRequestedV2(
        user_id=user_id,
        email=None if phone else "member@example.com",
        phone=phone,
        reset_token="code-" + uuid.uuid4().hex,
        expires_at=datetime.now(UTC) + expires_in,
    )


async def rows(notifications) -> list[Delivery]:
    async with notifications.app.state.kernel.db.sessions() as session:
        return list((await session.scalars(select(Delivery).order_by(Delivery.id))).all())


async def test_a_push_code_is_dropped_from_the_delivery_once_sent(notifications, fcm):
    member = person(Role.CUSTOMER)
    await notifications.with_phone(member)
    event = reset(member.user_id)
    await notifications.announce(event)
    await eventually(lambda: len(fcm.state.received) == 1, timeout=5)
    assert fcm.state.received[0].message["data"]["reset_token"] == event.reset_token

    async def scrubbed() -> bool:
        return [row.status for row in await rows(notifications)] == ["sent"]

    await eventually(scrubbed, timeout=5)
    [row] = await rows(notifications)
    assert "reset_token" not in row.data
    assert event.reset_token not in str(row.data) + row.body
    assert row.critical is False


async def test_a_phone_only_member_gets_the_code_by_sms_once(open_notifications, fcm, sms):
    url, state = sms
    async with open_notifications(sms_endpoint=url) as notifications:
        member = person(Role.CUSTOMER)  # no app installed: the SMS is the only way
        event = reset(member.user_id, phone="+821012345678")
        await notifications.announce(event, event)  # redelivered: still one SMS
        await eventually(lambda: len(state.sent) == 1, timeout=5)
        [sent] = state.sent
        assert sent.to == "+821012345678"
        assert event.reset_token in sent.body

        async def scrubbed() -> bool:
            return [row.status for row in await rows(notifications)] == ["sent"]

        await eventually(scrubbed, timeout=5)
        [row] = await rows(notifications)
        assert event.reset_token not in str(row.data) + row.body + row.title
        [notice] = await notifications.inbox(member)
        assert event.reset_token not in notice["body"] + notice["title"]


async def test_a_refused_sms_is_parked_without_the_code(open_notifications, fcm, sms):
    url, state = sms
    state.unsubscribed.add("+821055555555")
    async with open_notifications(sms_endpoint=url) as notifications:
        event = reset(uuid.uuid4(), phone="+821055555555")
        await notifications.announce(event)

        async def settled() -> bool:
            return [row.status for row in await rows(notifications)] == ["dropped"]

        await eventually(settled, timeout=5)
        [row] = await rows(notifications)
        assert "21610" in (row.last_error or "")
        assert event.reset_token not in str(row.data) + row.body


async def test_a_reset_respects_quiet_hours_and_an_expired_code_is_never_sent(notifications, fcm):
    now = datetime.now(UTC)
    quiet = {
        "quiet_start": (now - timedelta(hours=1)).strftime("%H:%M"),
        "quiet_end": (now + timedelta(hours=1)).strftime("%H:%M"),
        "timezone": "UTC",
    }
    member = person(Role.CUSTOMER)
    await notifications.with_phone(member, **quiet)
    await notifications.announce(reset(member.user_id))
    [held] = await rows(notifications)
    assert held.status == "pending"
    assert held.next_attempt_at > now + timedelta(minutes=50)  # not critical: waits for the morning

    async with notifications.app.state.kernel.db.transaction() as session:  # the morning has come
        row = await session.get(Delivery, held.id)
        assert row is not None
        row.next_attempt_at = now - timedelta(seconds=1)
        row.data = {**row.data, "expires_at": (now - timedelta(minutes=1)).isoformat()}
    notifications.app.state.dispatcher.wake()

    async def dropped() -> bool:
        return [row.status for row in await rows(notifications)] == ["dropped"]

    await eventually(dropped, timeout=5)
    [row] = await rows(notifications)
    assert row.last_error == "expired before it could be sent"
    assert "reset_token" not in row.data
    assert fcm.state.received == []
