"""auth's sessions and security controls: password rules, lockout without enumeration,
refresh rotation with reuse detection, logout, password change, key rotation, roles and
the audit trail."""

from __future__ import annotations

import pytest

from common.security import JwksCache, Role, TokenVerifier
from tests.auth.helpers import PASSWORD, bearer, operator_tokens, signup_and_login


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("short1!", "at least 10 characters"),
        ("password123", "most common"),
        ("aaaaaaaaaaaa", "5 different characters"),
        ("kimsungmin-2024!", "email name"),
        ("x" * 129, "at most 128"),
    ],
)
async def test_weak_passwords_are_refused_with_reasons(client, password, reason):
    response = await client.post("/signup", json={"email": "kimsungmin@example.com", "password": password})
    assert response.status_code == 422
    problems = response.json()["detail"]
    assert any(reason in problem["msg"] for problem in problems), problems
    assert {tuple(problem["loc"]) for problem in problems} == {("body", "password")}


async def test_lockout_after_repeated_failures_and_no_enumeration(client):
    await signup_and_login(client, email="locked@example.com")
    for email in ("locked@example.com", "nobody@example.com"):
        answers = [await client.post("/login", json={"email": email, "password": "wrong password!"}) for _ in range(5)]
        assert [answer.status_code for answer in answers] == [401] * 5
        locked = await client.post("/login", json={"email": email, "password": PASSWORD})
        assert locked.status_code == 429
        assert int(locked.headers["retry-after"]) > 0
        assert locked.json()["detail"] == "too many failed attempts; try again later"


async def test_refresh_rotates_and_a_reused_token_revokes_the_family(client):
    _, first = await signup_and_login(client)
    second = (await client.post("/token/refresh", json={"refresh_token": first["refresh_token"]})).json()
    assert second["refresh_token"] != first["refresh_token"]
    assert (await client.get("/me", headers=bearer(second))).status_code == 200
    replay = await client.post("/token/refresh", json={"refresh_token": first["refresh_token"]})
    assert replay.status_code == 401
    # The thief's replay also cost the legitimate holder the family: both must log in again.
    assert (await client.post("/token/refresh", json={"refresh_token": second["refresh_token"]})).status_code == 401


async def test_logout_revokes_the_session(client):
    _, tokens = await signup_and_login(client)
    assert (await client.post("/logout", json={"refresh_token": tokens["refresh_token"]})).status_code == 204
    assert (await client.post("/token/refresh", json={"refresh_token": tokens["refresh_token"]})).status_code == 401
    assert (await client.post("/logout", json={"refresh_token": tokens["refresh_token"]})).status_code == 204


async def test_password_change_ends_every_session(client):
    email = "changer@example.com"
    _, tokens = await signup_and_login(client, email=email)
    wrong = await client.post(
        "/password",
        headers=bearer(tokens),
        json={"current_password": "not it at all", "new_password": "a brand new secret"},
    )
    assert wrong.status_code == 403
    changed = await client.post(
        "/password", headers=bearer(tokens), json={"current_password": PASSWORD, "new_password": "a brand new secret"}
    )
    assert changed.status_code == 204
    assert (await client.post("/token/refresh", json={"refresh_token": tokens["refresh_token"]})).status_code == 401
    assert (await client.post("/login", json={"email": email, "password": PASSWORD})).status_code == 401
    assert (await client.post("/login", json={"email": email, "password": "a brand new secret"})).status_code == 200


async def test_key_rotation_keeps_old_tokens_valid_and_signs_with_the_new_key(app_and_client, settings):
    app, client = app_and_client
    operator = await operator_tokens(app, client)
    _, before = await signup_and_login(client)
    old_kid = app.state.keys.active.kid
    rotated = await client.post("/admin/keys/rotate", headers=bearer(operator))
    assert rotated.status_code == 200
    new_kid = rotated.json()["kid"]
    assert new_kid != old_kid
    document = (await client.get("/.well-known/jwks.json")).json()
    assert {key["kid"] for key in document["keys"]} == {old_kid, new_kid}
    outside = TokenVerifier(JwksCache.static(document), issuer=settings.jwt_issuer, audience=settings.jwt_audience)
    assert (await outside.verify(before["access_token"])).roles == {Role.CUSTOMER}  # old token still good
    _, after = await signup_and_login(client)
    import jwt

    assert jwt.get_unverified_header(after["access_token"])["kid"] == new_kid


async def test_roles_are_assigned_by_operators_only_and_audited(app_and_client):
    app, client = app_and_client
    operator = await operator_tokens(app, client)
    owner_id, owner = await signup_and_login(client)
    body = {"roles": ["branch_owner"], "branches": ["gangnam-1"]}
    assert (await client.put(f"/users/{owner_id}/roles", json=body, headers=bearer(owner))).status_code == 403
    assigned = await client.put(f"/users/{owner_id}/roles", json=body, headers=bearer(operator))
    assert assigned.json()["roles"] == ["branch_owner"]
    assert assigned.json()["branches"] == ["gangnam-1"]
    assert (
        await client.put(f"/users/{owner_id}/roles", json={"roles": ["emperor"]}, headers=bearer(operator))
    ).status_code == 422
    trail = (await client.get("/admin/audit", params={"subject": owner_id}, headers=bearer(operator))).json()
    actions = [entry["action"] for entry in trail]
    assert actions[0] == "roles_changed"
    assert trail[0]["details"]["after"] == {"roles": ["branch_owner"], "branches": ["gangnam-1"]}
    assert {"account_created", "login_succeeded"} <= set(actions)


async def test_a_stranger_guessing_locks_out_only_their_own_address(client):
    email = "targeted@example.com"
    await signup_and_login(client, email=email)
    stranger, member = {"x-forwarded-for": "203.0.113.66"}, {"x-forwarded-for": "198.51.100.7"}
    for _ in range(5):
        wrong = await client.post("/login", json={"email": email, "password": "wrong password!"}, headers=stranger)
        assert wrong.status_code == 401
    locked = await client.post("/login", json={"email": email, "password": PASSWORD}, headers=stranger)
    assert locked.status_code == 429
    assert (await client.post("/login", json={"email": email, "password": PASSWORD}, headers=member)).status_code == 200


async def test_stale_lockout_rows_are_purged(app_and_client):
    from datetime import timedelta

    from sqlalchemy import func, select, update

    from auth.models import LoginThrottle
    from common.events.envelope import utc_now

    app, client = app_and_client
    accounts = app.state.accounts
    for address in ("203.0.113.1", "203.0.113.2"):
        await client.post(
            "/login",
            json={"email": "nobody@example.com", "password": "wrong password!"},
            headers={"x-forwarded-for": address},
        )
    database = app.state.kernel.db
    async with database.transaction() as session:  # one counter's window ended long ago
        await session.execute(
            update(LoginThrottle)
            .where(LoginThrottle.source == "203.0.113.1")
            .values(window_started_at=utc_now() - timedelta(hours=1))
        )
    assert await accounts.purge_stale_throttles() == 1
    async with database.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(LoginThrottle)) == 1


async def test_deleting_an_account_tells_every_service_and_ends_its_tokens(app_and_client, settings):
    from common.events.revocations import TokensRevoked
    from contracts import UserDeleted
    from tests.auth.helpers import outbox_events
    from tests.support.waiting import eventually

    _app, client = app_and_client
    user_id, tokens = await signup_and_login(client)
    gone = await client.request("DELETE", "/me", json={"password": PASSWORD}, headers=bearer(tokens))
    assert gone.status_code == 204
    [deleted] = outbox_events(settings, UserDeleted.routing_key())
    assert deleted["data"] == {"user_id": user_id}
    revoked = outbox_events(settings, TokensRevoked.routing_key())
    assert [item["data"]["subject"] for item in revoked] == [user_id]

    async def refused() -> bool:  # the revocation travels through the outbox and the bus
        return (await client.get("/me", headers=bearer(tokens))).status_code == 401

    await eventually(refused, timeout=5)
