"""The member journey every deployment mode must pass: sign up, log in, call, get notified."""

from __future__ import annotations

import time
import uuid

import httpx


def signup_login_and_get_welcomed(gateway: str, *, timeout: float = 30) -> dict[str, object]:
    email = f"member-{uuid.uuid4().hex[:8]}@example.com"
    password = "a long enough password"
    with httpx.Client(base_url=gateway, timeout=10) as client:
        created = client.post("/api/auth/signup", json={"email": email, "password": password})
        assert created.status_code == 201, created.text
        login = client.post("/api/auth/login", json={"email": email, "password": password})
        assert login.status_code == 200, login.text
        auth = {"authorization": f"Bearer {login.json()['access_token']}"}
        me = client.get("/api/auth/me", headers=auth)
        assert me.status_code == 200, me.text
        assert me.json()["email"] == email
        assert client.get("/api/notifications/inbox").status_code == 401  # no token, no inbox
        deadline = time.monotonic() + timeout
        while True:
            inbox = client.get("/api/notifications/inbox", headers=auth)
            assert inbox.status_code == 200, inbox.text
            if inbox.json()["messages"]:
                break
            assert time.monotonic() < deadline, "the welcome notice never arrived"
            time.sleep(0.1)
        [notice] = inbox.json()["messages"]
        assert notice["kind"] == "welcome"
        return {"user_id": me.json()["id"], "auth": auth}
