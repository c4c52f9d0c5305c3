"""The FCM HTTP v1 client against the local stand-in over real HTTP: the signed OAuth2
grant, token caching and refresh, and what each FCM error means."""

from __future__ import annotations

import asyncio

from notification.fcm import FcmSender, Outcome, Push


def push(token: str = "device-token-0001", critical: bool = False) -> Push:
    return Push(token, "Treadmill 3 is down", "It stopped answering", {"kind": "equipment_fault"}, critical)


async def test_one_signed_grant_serves_many_sends(fcm):
    sender = FcmSender(fcm.account, endpoint=fcm.url)
    try:
        results = await asyncio.gather(*(sender.send(push(f"device-token-{n:04d}")) for n in range(20)))
    finally:
        await sender.close()
    assert {result.outcome for result in results} == {Outcome.SENT}
    assert all(result.message_name.startswith("projects/smartgym-test/messages/") for result in results)
    assert fcm.state.token_requests == 1  # cached; concurrent first sends wait for one fetch
    [first, *_] = fcm.state.received
    assert first.message["notification"] == {"title": "Treadmill 3 is down", "body": "It stopped answering"}
    assert first.message["android"] == {"priority": "normal"}


async def test_a_revoked_access_token_is_replaced_and_the_send_goes_through(fcm):
    sender = FcmSender(fcm.account, endpoint=fcm.url)
    try:
        assert (await sender.send(push())).outcome is Outcome.SENT
        fcm.state.revoke_access_tokens()
        result = await sender.send(push(critical=True))
    finally:
        await sender.close()
    assert result.outcome is Outcome.SENT
    assert fcm.state.token_requests == 2
    assert fcm.state.refused_auth == 1
    assert fcm.state.received[-1].message["android"] == {"priority": "high"}


async def test_an_access_token_about_to_expire_is_refreshed_before_use(fcm):
    fcm.state.token_ttl_s = 30  # inside the refresh margin: every send fetches a new one
    sender = FcmSender(fcm.account, endpoint=fcm.url)
    try:
        for _ in range(3):
            assert (await sender.send(push())).outcome is Outcome.SENT
    finally:
        await sender.close()
    assert fcm.state.token_requests == 3


async def test_each_fcm_error_maps_to_what_the_dispatcher_must_do(fcm):
    fcm.state.unregistered.add("uninstalled-app-token")
    sender = FcmSender(fcm.account, endpoint=fcm.url)
    try:
        gone = await sender.send(push("uninstalled-app-token"))
        fcm.state.failures.extend([("QUOTA_EXCEEDED", 7.0), ("UNAVAILABLE", None), ("INVALID_ARGUMENT", None)])
        quota = await sender.send(push())
        unavailable = await sender.send(push())
        invalid = await sender.send(push())
    finally:
        await sender.close()
    assert gone.outcome is Outcome.UNREGISTERED
    assert "UNREGISTERED" in gone.detail
    assert (quota.outcome, quota.retry_after_s) == (Outcome.RETRY, 7.0)
    assert "QUOTA_EXCEEDED" in quota.detail
    assert (unavailable.outcome, unavailable.retry_after_s) == (Outcome.RETRY, None)
    assert invalid.outcome is Outcome.REJECTED


async def test_a_forged_grant_is_refused_and_the_send_is_retried_later(fcm):
    from notification.fcm import ServiceAccount

    impostor = ServiceAccount.ephemeral(fcm.account.project_id, fcm.account.token_uri)
    sender = FcmSender(impostor, endpoint=fcm.url)
    try:
        result = await sender.send(push())
    finally:
        await sender.close()
    assert result.outcome is Outcome.RETRY
    assert "invalid_grant" in result.detail
    assert fcm.state.received == []


async def test_fcm_unreachable_is_a_retry(unused_tcp_port):
    from notification.fcm import ServiceAccount

    url = f"http://127.0.0.1:{unused_tcp_port}"
    sender = FcmSender(ServiceAccount.ephemeral("p", f"{url}/token"), endpoint=url, timeout_s=1)
    try:
        result = await sender.send(push())
    finally:
        await sender.close()
    assert result.outcome is Outcome.RETRY
