"""Device credentials, memberships (published for access) and password resets."""

from __future__ import annotations

import uuid

import jwt

from common.security import Role
from contracts import DeviceRevoked, MembershipChanged, PasswordResetRequestedV2
from tests.auth.helpers import PASSWORD, bearer, operator_tokens, outbox_events, signup_and_login


async def test_device_credentials_lifecycle(app_and_client, settings):
    app, client = app_and_client
    operator = await operator_tokens(app, client)
    _, member = await signup_and_login(client)
    body = {"name": "front gate", "kind": "gate", "branch_id": "gangnam-1"}
    assert (await client.post("/devices", json=body, headers=bearer(member))).status_code == 403
    created = (await client.post("/devices", json=body, headers=bearer(operator))).json()
    credentials = {"client_id": created["client_id"], "client_secret": created["client_secret"]}

    issued = await client.post("/devices/token", json=credentials)
    assert issued.status_code == 200
    claims = jwt.decode(issued.json()["access_token"], options={"verify_signature": False})
    assert claims["sub"] == f"device:{created['client_id']}"
    assert claims["roles"] == [Role.DEVICE.value]
    assert claims["branches"] == ["gangnam-1"]
    assert round(claims["exp"] - claims["iat"]) == 300

    rotated = (await client.post(f"/devices/{created['client_id']}/rotate", headers=bearer(operator))).json()
    assert (await client.post("/devices/token", json=credentials)).status_code == 401  # old secret is dead
    fresh = {"client_id": created["client_id"], "client_secret": rotated["client_secret"]}
    assert (await client.post("/devices/token", json=fresh)).status_code == 200

    assert (await client.delete(f"/devices/{created['client_id']}", headers=bearer(operator))).status_code == 204
    assert (await client.delete(f"/devices/{created['client_id']}", headers=bearer(operator))).status_code == 204
    refused = await client.post("/devices/token", json=fresh)
    assert refused.status_code == 401
    assert refused.json()["detail"] == "device credentials rejected"
    revoked = outbox_events(settings, DeviceRevoked.routing_key())
    assert [event["data"]["device_id"] for event in revoked] == [created["client_id"]]  # once, not twice
    unknown = {"client_id": str(uuid.uuid4()), "client_secret": "x" * 43}
    assert (await client.post("/devices/token", json=unknown)).status_code == 401


async def test_memberships_are_published_with_increasing_versions(app_and_client, settings):
    app, client = app_and_client
    operator = await operator_tokens(app, client)
    member_id, member = await signup_and_login(client)
    body = {
        "branch_id": "gangnam-1",
        "status": "active",
        "valid_from": "2026-01-01T00:00:00Z",
        "valid_until": "2027-01-01T00:00:00Z",
    }
    first = await client.put(f"/members/{member_id}/memberships", json=body, headers=bearer(operator))
    assert first.status_code == 200, first.text
    blocked = await client.put(
        f"/members/{member_id}/memberships", json={**body, "status": "blocked"}, headers=bearer(operator)
    )
    assert blocked.json()["version"] == 2
    assert blocked.json()["id"] == first.json()["id"]
    events = outbox_events(settings, MembershipChanged.routing_key())
    assert [(event["data"]["status"], event["data"]["version"]) for event in events] == [("active", 1), ("blocked", 2)]
    mine = (await client.get("/me/memberships", headers=bearer(member))).json()
    assert [(item["branch_id"], item["status"]) for item in mine] == [("gangnam-1", "blocked")]


async def test_branch_owner_manages_only_their_branch(app_and_client):
    app, client = app_and_client
    owner = await operator_tokens(app, client, role=Role.BRANCH_OWNER, branches=["gangnam-1"])
    member_id, member = await signup_and_login(client)
    body = {"status": "active", "valid_from": "2026-01-01T00:00:00Z", "valid_until": "2027-01-01T00:00:00Z"}
    url = f"/members/{member_id}/memberships"
    assert (await client.put(url, json={**body, "branch_id": "gangnam-1"}, headers=bearer(owner))).status_code == 200
    assert (await client.put(url, json={**body, "branch_id": "hongdae-2"}, headers=bearer(owner))).status_code == 403
    assert (await client.put(url, json=body, headers=bearer(owner))).status_code == 403  # chain-wide
    assert (await client.put(url, json={**body, "branch_id": "gangnam-1"}, headers=bearer(member))).status_code == 403


async def test_membership_input_is_validated(app_and_client):
    app, client = app_and_client
    operator = await operator_tokens(app, client)
    member_id, _ = await signup_and_login(client)
    url = f"/members/{member_id}/memberships"
    backwards = {"status": "active", "valid_from": "2027-01-01T00:00:00Z", "valid_until": "2026-01-01T00:00:00Z"}
    assert (await client.put(url, json=backwards, headers=bearer(operator))).status_code == 422
    naive = {"status": "active", "valid_from": "2026-01-01T00:00:00", "valid_until": "2027-01-01T00:00:00"}
    assert (await client.put(url, json=naive, headers=bearer(operator))).status_code == 422
    unknown_status = {**backwards, "status": "vip", "valid_from": "2026-01-01T00:00:00Z"}
    assert (await client.put(url, json=unknown_status, headers=bearer(operator))).status_code == 422
    nobody = f"/members/{uuid.uuid4()}/memberships"
    good = {"status": "active", "valid_from": "2026-01-01T00:00:00Z", "valid_until": "2027-01-01T00:00:00Z"}
    assert (await client.put(nobody, json=good, headers=bearer(operator))).status_code == 404


async def test_password_reset_by_one_time_token(client, settings):
    email = "forgetful@example.com"
    _, tokens = await signup_and_login(client, email=email)
    for address in (email, "stranger@example.com"):
        answer = await client.post("/password/reset-request", json={"email": address})
        assert answer.status_code == 202
        assert answer.json()["detail"] == "if the account exists, a reset link is on its way"
    [requested] = outbox_events(settings, PasswordResetRequestedV2.routing_key())  # only for the real account
    reset_token = requested["data"]["reset_token"]
    weak = await client.post("/password/reset", json={"reset_token": reset_token, "new_password": "short"})
    assert weak.status_code == 422
    done = await client.post("/password/reset", json={"reset_token": reset_token, "new_password": "fresh start 2026"})
    assert done.status_code == 204
    again = await client.post("/password/reset", json={"reset_token": reset_token, "new_password": "another one 2026"})
    assert again.status_code == 400
    assert (await client.post("/login", json={"email": email, "password": PASSWORD})).status_code == 401
    assert (await client.post("/login", json={"email": email, "password": "fresh start 2026"})).status_code == 200
    assert (await client.post("/token/refresh", json={"refresh_token": tokens["refresh_token"]})).status_code == 401


async def test_a_revoked_devices_token_is_refused_at_once(app_and_client):
    import asyncio

    from common.security import InvalidToken

    app, client = app_and_client
    operator = await operator_tokens(app, client)
    created = (
        await client.post(
            "/devices", json={"name": "gate", "kind": "gate", "branch_id": "b-1"}, headers=bearer(operator)
        )
    ).json()
    token = (
        await client.post(
            "/devices/token", json={"client_id": created["client_id"], "client_secret": created["client_secret"]}
        )
    ).json()
    verifier = app.state.kernel.verifier
    assert (await verifier.verify(token["access_token"])).subject == f"device:{created['client_id']}"
    await client.delete(f"/devices/{created['client_id']}", headers=bearer(operator))
    refusal = None
    for _ in range(100):  # DeviceRevoked travels through the outbox and the bus
        try:
            await verifier.verify(token["access_token"])
        except InvalidToken as refused:
            refusal = refused.reason
            break
        await asyncio.sleep(0.05)
    assert refusal == "token revoked"


async def test_reset_codes_are_throttled_per_account_and_only_the_latest_opens(client, settings):
    email = "flooded@example.com"
    await signup_and_login(client, email=email)
    for _ in range(5):  # a stranger keeps asking for the member's account
        answer = await client.post("/password/reset-request", json={"email": email})
        assert answer.status_code == 202
        assert answer.json()["detail"] == "if the account exists, a reset link is on its way"
    sent = outbox_events(settings, PasswordResetRequestedV2.routing_key())
    assert len(sent) == 3  # the account's allowance per hour; the rest were dropped quietly
    codes = [event["data"]["reset_token"] for event in sent]
    for earlier in codes[:-1]:  # each new code voided the ones before it
        refused = await client.post(
            "/password/reset", json={"reset_token": earlier, "new_password": "fresh start 2026"}
        )
        assert refused.status_code == 400
    done = await client.post("/password/reset", json={"reset_token": codes[-1], "new_password": "fresh start 2026"})
    assert done.status_code == 204


async def test_a_phone_only_account_gets_its_code_by_sms(client, settings):
    phone = "+821012345678"
    created = await client.post("/signup", json={"phone": phone, "password": PASSWORD})
    assert created.status_code == 201
    assert (await client.post("/password/reset-request", json={"phone": phone})).status_code == 202
    assert (await client.post("/password/reset-request", json={"phone": "+821099999999"})).status_code == 202
    both = await client.post("/password/reset-request", json={"phone": phone, "email": "a@example.com"})
    assert both.status_code == 422
    [requested] = outbox_events(settings, PasswordResetRequestedV2.routing_key())
    assert requested["data"]["phone"] == phone
    assert requested["data"]["email"] is None
    code = requested["data"]["reset_token"]
    assert (
        await client.post("/password/reset", json={"reset_token": code, "new_password": "fresh start 2026"})
    ).status_code == 204
    assert (await client.post("/login", json={"phone": phone, "password": "fresh start 2026"})).status_code == 200
    # auth keeps only the code's hash
    from sqlalchemy import create_engine, text

    from common.db import sync_url

    engine = create_engine(sync_url(settings.database_url("auth")))
    with engine.connect() as connection:
        stored = connection.execute(text("SELECT token_hash FROM password_resets")).scalars().all()
    engine.dispose()
    assert code not in stored


async def test_a_published_reset_code_leaves_auths_outbox(app_and_client, settings):
    from auth.housekeeping import forget_sent_reset_codes
    from tests.support.waiting import eventually

    app, client = app_and_client
    await signup_and_login(client, email="outboxed@example.com")
    await client.post("/password/reset-request", json={"email": "outboxed@example.com"})
    kernel = app.state.kernel

    async def published() -> bool:
        return await kernel.relay.backlog() == 0

    await eventually(published, timeout=5)
    assert len(outbox_events(settings, PasswordResetRequestedV2.routing_key())) == 1
    assert await forget_sent_reset_codes(kernel) == 1
    assert outbox_events(settings, PasswordResetRequestedV2.routing_key()) == []
    assert outbox_events(settings, "UserRegistered.v1")  # everything else keeps its retention


async def test_an_owner_manages_the_devices_of_their_own_branches_only(app_and_client, settings):
    app, client = app_and_client
    owner = await operator_tokens(app, client, role=Role.BRANCH_OWNER, branches=["gangnam-1"])
    operator = await operator_tokens(app, client)
    helper = await operator_tokens(app, client, role=Role.HELPER, branches=["gangnam-1"])

    mine = await client.post(
        "/devices", json={"name": "kiosk", "kind": "kiosk", "branch_id": "gangnam-1"}, headers=bearer(owner)
    )
    assert mine.status_code == 201, mine.text
    theirs = await client.post(
        "/devices", json={"name": "kiosk", "kind": "kiosk", "branch_id": "hongdae-2"}, headers=bearer(owner)
    )
    assert theirs.status_code == 403
    assert theirs.json()["detail"] == "you do not manage this branch"
    refused = await client.post(
        "/devices", json={"name": "kiosk", "kind": "kiosk", "branch_id": "gangnam-1"}, headers=bearer(helper)
    )
    assert refused.status_code == 403
    assert refused.json()["detail"] == "only operators and branch owners manage devices"
    other = (
        await client.post(
            "/devices", json={"name": "gate", "kind": "gate", "branch_id": "hongdae-2"}, headers=bearer(operator)
        )
    ).json()

    listed = await client.get("/devices", params={"branch_id": "gangnam-1"}, headers=bearer(owner))
    assert [(row["id"], row["kind"]) for row in listed.json()] == [(mine.json()["client_id"], "kiosk")]
    assert "secret_hash" not in listed.json()[0]
    assert "client_secret" not in listed.json()[0]
    assert (await client.get("/devices", params={"branch_id": "hongdae-2"}, headers=bearer(owner))).status_code == 403
    assert (await client.get("/devices", params={"branch_id": "../x"}, headers=bearer(owner))).status_code == 422

    # Another branch's device: neither rotated nor revoked, and its credentials still work.
    for method, url in (
        ("POST", f"/devices/{other['client_id']}/rotate"),
        ("DELETE", f"/devices/{other['client_id']}"),
    ):
        answer = await client.request(method, url, headers=bearer(owner))
        assert answer.status_code == 403, answer.text
        assert answer.json()["detail"] == "this device belongs to a branch you do not manage"
    assert (await client.post("/devices/token", json=other)).status_code == 200
    assert not [
        e for e in outbox_events(settings, DeviceRevoked.routing_key()) if e["data"]["device_id"] == other["client_id"]
    ]

    rotated = await client.post(f"/devices/{mine.json()['client_id']}/rotate", headers=bearer(owner))
    assert rotated.status_code == 200
    old = {"client_id": mine.json()["client_id"], "client_secret": mine.json()["client_secret"]}
    assert (await client.post("/devices/token", json=old)).status_code == 401
    assert (await client.delete(f"/devices/{mine.json()['client_id']}", headers=bearer(owner))).status_code == 204
    fresh = {"client_id": mine.json()["client_id"], "client_secret": rotated.json()["client_secret"]}
    assert (await client.post("/devices/token", json=fresh)).status_code == 401
    assert (await client.delete(f"/devices/{uuid.uuid4()}", headers=bearer(owner))).status_code == 404
    listed = await client.get(
        "/devices", params={"branch_id": "gangnam-1", "include_revoked": "true"}, headers=bearer(owner)
    )
    assert listed.json()[0]["revoked_at"] is not None
    assert (await client.get("/devices", params={"branch_id": "gangnam-1"}, headers=bearer(owner))).json() == []
    # Operators keep managing every branch.
    assert (await client.post(f"/devices/{other['client_id']}/rotate", headers=bearer(operator))).status_code == 200
