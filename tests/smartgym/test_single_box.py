"""Single-box production: ``smartgym up`` with SQLite and the in-process bus, allowed only
when asked for, still refusing stand-ins and default secrets, and losing no event to a
``kill -9``."""

from __future__ import annotations

import json
import secrets
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from common.settings import PlatformSettings
from notification.fcm import ServiceAccount
from tests.support.apps import free_port
from tests.support.embedded import PASSWORD, free_port_offset, seed_pack
from tests.support.processes import clean_env, start, stop, wait_healthy

REAL_SECRET = "a-real-secret-from-the-vault"


def test_production_without_a_broker_needs_single_box(tmp_path):
    with pytest.raises(ValidationError, match="SMARTGYM_SINGLE_BOX"):
        PlatformSettings(environment="production", key_encryption_secret=REAL_SECRET)
    single = PlatformSettings(
        environment="production", single_box=True, key_encryption_secret=REAL_SECRET, data_dir=tmp_path
    )
    assert single.database_url("auth").startswith("sqlite")
    from auth.settings import AuthSettings

    with pytest.raises(ValidationError, match="local default"):
        AuthSettings(environment="production", single_box=True)  # default secrets stay refused


def _production_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    unreachable = f"http://127.0.0.1:{free_port()}"  # configured partners; these tests never call them
    account = ServiceAccount.ephemeral("smartgym-box", f"{unreachable}/token").to_file(tmp_path / "fcm.json")
    return clean_env(
        SMARTGYM_ENVIRONMENT="production",
        SMARTGYM_SINGLE_BOX="true",
        SMARTGYM_KEY_ENCRYPTION_SECRET=secrets.token_urlsafe(32),
        SMARTGYM_BIOMETRIC_SEALING_KEYS=json.dumps({"1": secrets.token_urlsafe(32)}),
        SMARTGYM_SIGNING_KEY_SECRET=secrets.token_urlsafe(32),
        SMARTGYM_SMS_ENDPOINT=unreachable.replace("http://", "https://"),
        SMARTGYM_SMS_AUTH_TOKEN=secrets.token_hex(16),
        SMARTGYM_CARDCHECK_URL=unreachable,
        SMARTGYM_CARDCHECK_API_KEY=secrets.token_urlsafe(32),
        SMARTGYM_FCM_SERVICE_ACCOUNT_FILE=str(account),
        SMARTGYM_FCM_ENDPOINT=unreachable,
        SMARTGYM_FCM_TOKEN_URI=f"{unreachable}/token",
        **extra,
    )


def test_single_box_refuses_stand_ins_for_partners_it_was_not_given(tmp_path):
    env = _production_env(tmp_path)
    del env["SMARTGYM_CARDCHECK_URL"]
    done = subprocess.run(
        [*_smartgym(), "up", "--port-offset", str(free_port_offset())],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "SMARTGYM_CARDCHECK_URL" in done.stderr
    assert not (tmp_path / "var" / "auth.db").exists()  # refused before anything started

    refused = subprocess.run(
        [*_smartgym(), "up", "--port-offset", str(free_port_offset())],
        env=clean_env(SMARTGYM_ENVIRONMENT="production", SMARTGYM_KEY_ENCRYPTION_SECRET=REAL_SECRET),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode != 0
    assert "SMARTGYM_SINGLE_BOX" in refused.stderr


def _smartgym() -> list[str]:
    return [sys.executable, "-m", "smartgym"]


def _sign_up_until(gateway: str, stop_flag: threading.Event, sent: list[str]) -> None:
    with httpx.Client(base_url=gateway, timeout=10) as client:
        while not stop_flag.is_set():
            email = f"m-{uuid.uuid4().hex[:10]}@example.com"
            sent.append(email)
            try:
                client.post("/api/auth/signup", json={"email": email, "password": PASSWORD})
            except httpx.HTTPError:
                return  # the process died under us


def _welcomes(data_dir: Path) -> tuple[set[str], dict[str, int]]:
    with sqlite3.connect(data_dir / "auth.db") as auth:
        users = {str(uuid.UUID(row[0])) for row in auth.execute("SELECT id FROM users")}
    with sqlite3.connect(data_dir / "notification.db") as notification:
        rows = notification.execute(
            "SELECT user_id, count(*) FROM inbox_messages WHERE kind = 'welcome' GROUP BY user_id"
        ).fetchall()
    return users, {str(uuid.UUID(user_id)): count for user_id, count in rows}


def test_kill_9_mid_stream_loses_no_event_and_applies_each_once(tmp_path):
    offset = free_port_offset()
    gateway = f"http://127.0.0.1:{8000 + offset}"
    data_dir = tmp_path / "var"
    seed_pack(tmp_path)
    env = _production_env(tmp_path)
    log = tmp_path / "up.log"
    process = start(["up", "--port-offset", str(offset)], env=env, cwd=tmp_path, log=log)
    try:
        wait_healthy(gateway, process, log, timeout=90)
        stop_flag, sent = threading.Event(), []
        writers = [threading.Thread(target=_sign_up_until, args=(gateway, stop_flag, sent)) for _ in range(4)]
        for writer in writers:
            writer.start()
        deadline = time.monotonic() + 30
        while len(sent) < 24 and time.monotonic() < deadline:
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)  # mid-stream: requests, outbox relays and consumers in flight
        process.wait()
        stop_flag.set()
        for writer in writers:
            writer.join()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    users, welcomes = _welcomes(data_dir)
    assert len(users) >= 4, log.read_text()[-3000:]
    print(f"at the kill: {len(users)} members, {len(users - set(welcomes))} not yet welcomed")

    log2 = tmp_path / "up2.log"
    process = start(["up", "--port-offset", str(offset)], env=env, cwd=tmp_path, log=log2)
    try:
        wait_healthy(gateway, process, log2, timeout=60)
        deadline = time.monotonic() + 30
        while True:
            users, welcomes = _welcomes(data_dir)
            if set(welcomes) >= users or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    finally:
        code = stop(process)
    assert code == 0, log2.read_text()[-3000:]
    assert set(welcomes) == users, f"{len(users - set(welcomes))} of {len(users)} members never welcomed"
    assert set(welcomes.values()) == {1}  # each event took effect once
    with sqlite3.connect(data_dir / "auth.db") as auth:
        assert auth.execute("SELECT count(*) FROM outbox WHERE published_at IS NULL").fetchone() == (0,)
