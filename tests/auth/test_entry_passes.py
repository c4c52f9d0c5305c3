"""Entry passes (the member's QR code) and membership access hours."""

from __future__ import annotations

from datetime import UTC, datetime

import jwt

from tests.auth.helpers import bearer, grant_membership, operator_tokens, outbox_events, signup_and_login


async def test_entry_pass_is_short_lived_bound_and_not_an_access_token(app_and_client):
    client = app_and_client[1]
    member_id, tokens = await signup_and_login(client)
    issued = await client.post("/me/entry-pass", json={"branch_id": "gangnam"}, headers=bearer(tokens))
    assert issued.status_code == 200, issued.text
    claims = jwt.decode(issued.json()["code"], options={"verify_signature": False})
    assert claims["aud"] == "smartgym-entry"
    assert (claims["sub"], claims["branches"]) == (member_id, ["gangnam"])
    assert claims["exp"] - claims["iat"] == issued.json()["expires_in"] == 60
    # As a bearer token it is worthless: wrong audience.
    assert (await client.get("/me", headers={"authorization": f"Bearer {issued.json()['code']}"})).status_code == 401
    assert (
        await client.post("/me/entry-pass", json={"branch_id": "no spaces"}, headers=bearer(tokens))
    ).status_code == 422
    assert (await client.post("/me/entry-pass", json={"branch_id": "gangnam"})).status_code == 401


async def test_membership_access_hours_are_validated_and_published(app_and_client, settings):
    app, client = app_and_client
    operator = await operator_tokens(app, client)
    member_id, _ = await signup_and_login(client)
    granted = await grant_membership(client, operator, member_id, access_hours="22:00-06:00")
    assert granted["access_hours"] == "22:00-06:00"
    events = outbox_events(settings, "MembershipChanged.v1")
    assert events[-1]["data"]["access_hours"] == "22:00-06:00"
    body = {
        "branch_id": "b-1",
        "status": "active",
        "valid_from": datetime(2026, 1, 1, tzinfo=UTC).isoformat(),
        "valid_until": datetime(2027, 1, 1, tzinfo=UTC).isoformat(),
        "access_hours": "25:00-06:00",
    }
    refused = await client.put(f"/members/{member_id}/memberships", headers=bearer(operator), json=body)
    assert refused.status_code == 422
