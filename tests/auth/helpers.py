"""Helpers for auth's tests: members, operators and bearer headers."""

from __future__ import annotations

import uuid

from common.security import Role

PASSWORD = "correct horse battery"


async def signup_and_login(client, email=None, password=PASSWORD):
    email = email or f"m{uuid.uuid4().hex[:6]}@example.com"
    created = await client.post("/signup", json={"email": email, "password": password})
    assert created.status_code == 201, created.text
    login = await client.post("/login", json={"email": email, "password": password})
    assert login.status_code == 200, login.text
    return created.json()["id"], login.json()


def bearer(tokens):
    return {"authorization": f"Bearer {tokens['access_token']}"}


async def operator_tokens(app, client, role=Role.OPERATOR, branches=()):
    email = f"op{uuid.uuid4().hex[:6]}@example.com"
    user_id, _ = await signup_and_login(client, email=email)
    await app.state.accounts.assign_roles(
        actor="bootstrap", user_id=uuid.UUID(user_id), roles=[role], branches=list(branches), source=None
    )
    login = await client.post("/login", json={"email": email, "password": PASSWORD})
    return login.json()


async def grant_membership(client, operator_tokens_, member_id, **overrides):
    """An active membership of branch b-1 for 2026, as an operator grants it."""
    body = {
        "branch_id": "b-1",
        "status": "active",
        "valid_from": "2026-01-01T00:00:00Z",
        "valid_until": "2027-01-01T00:00:00Z",
        **overrides,
    }
    response = await client.put(f"/members/{member_id}/memberships", headers=bearer(operator_tokens_), json=body)
    assert response.status_code == 200, response.text
    return response.json()


def outbox_events(settings, routing_key: str) -> list[dict]:
    """Events auth wrote to its outbox with ``routing_key``, oldest first (envelopes)."""
    import json

    from sqlalchemy import create_engine, text

    from common.db import sync_url

    engine = create_engine(sync_url(settings.database_url("auth")))
    with engine.connect() as connection:
        bodies = (
            connection.execute(
                text("SELECT body FROM outbox WHERE routing_key = :key ORDER BY id"), {"key": routing_key}
            )
            .scalars()
            .all()
        )
    engine.dispose()
    return [json.loads(body) for body in bodies]
