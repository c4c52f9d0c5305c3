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
