"""No secret reaches a log line: a member's whole journey (sign-up, login, password reset,
a live run over a WebSocket with the token in its query, a shared link, face enrolment)
through the real gateway, auth, running and facemodel on loopback sockets, with every
log record of the process captured (uvicorn's access and error logs included) and
searched for every token, password, reset token and embedding value that was issued."""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import Iterator

import aiohttp
import pytest
from sqlalchemy import create_engine, select

from auth.app import create_app as create_auth
from auth.faces import FACE_SEALING_PURPOSE
from auth.models import FaceEnrollment
from auth.settings import AuthSettings
from common.crypto import VectorSealer
from common.db import sync_url
from common.migrations import upgrade
from common.observability import configure_logging
from common.redaction import redact
from contracts import PasswordResetRequestedV2
from facemodel.app import create_app as create_facemodel
from facemodel.settings import FacemodelSettings
from gateway.app import create_app as create_gateway
from gateway.settings import GatewaySettings
from running.app import create_app as create_running
from tests.auth.helpers import outbox_events
from tests.running.conftest import running_settings, track_points
from tests.support.apps import FAST_HASHER, free_port, serving


def test_redact_covers_queries_share_paths_and_bearer_tokens():
    jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1c2VyLTEifQ.c2lnbmF0dXJlLXBhcnQ"
    line = (
        f'127.0.0.1:5 - "WebSocket /api/live/ws/runs?mode=run&access_token={jwt}" [accepted] '
        "GET /api/live/ws/share/s3cr3t-link-token?x=1 Authorization: Bearer abc.def-ghi "
        "/reset?code=123456&lang=ko"
    )
    cleaned = redact(line)
    for secret in (jwt, "s3cr3t-link-token", "abc.def-ghi", "123456"):
        assert secret not in cleaned
    assert "mode=run" in cleaned
    assert "lang=ko" in cleaned
    assert "/api/live/ws/share/[redacted]?x=1" in cleaned


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    """Everything any logger emits, through the platform's own logging set-up, at DEBUG."""
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    access = logging.getLogger("uvicorn.access")
    buffer = io.StringIO()
    configure_logging("DEBUG", json_lines=True)
    root.handlers[0].setStream(buffer)  # type: ignore[attr-defined]
    access.disabled = False  # covered too, for deployments that keep uvicorn's access log
    quiet = {name: logging.getLogger(name).level for name in ("aiosqlite", "sqlalchemy", "asyncio")}
    for name in quiet:
        # Their DEBUG lines are statement traces of our own database (hashes, sealed
        # blobs, outbox bodies by design): never enabled outside a developer's laptop.
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        yield buffer
    finally:
        for name, level in quiet.items():
            logging.getLogger(name).setLevel(level)
        access.disabled = True
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)


async def test_no_secret_of_a_members_journey_is_logged(tmp_path, pack, photo_bytes, captured_logs):
    auth_port, face_port = free_port(), free_port()
    auth_url, face_url = f"http://127.0.0.1:{auth_port}", f"http://127.0.0.1:{face_port}"
    auth_settings = AuthSettings(environment="test", data_dir=tmp_path, facemodel_url=face_url, auth_url=auth_url)
    upgrade("auth", auth_settings.database_url("auth"))
    running_config = running_settings(tmp_path, auth_url=auth_url)
    upgrade("running", running_config.database_url("running"))
    running = create_running(running_config)
    face_settings = FacemodelSettings(environment="test", facemodel_pack=pack, auth_url=auth_url)
    password, new_password = f"pw-{uuid.uuid4().hex}", f"pw2-{uuid.uuid4().hex}"
    secrets: dict[str, str] = {"password": password, "new_password": new_password}
    async with (
        serving(create_auth(auth_settings, hasher=FAST_HASHER), auth_port),
        serving(create_facemodel(face_settings), face_port),
        serving(running) as running_url,
    ):
        live_url = f"http://127.0.0.1:{running.state.live_port}"
        gateway_settings = GatewaySettings(
            environment="test", auth_url=auth_url, running_url=running_url, running_live_url=live_url
        )
        async with serving(create_gateway(gateway_settings)) as gateway, aiohttp.ClientSession() as http:
            api, ws = f"{gateway}/api", gateway.replace("http", "ws", 1) + "/api"
            email = f"journey{uuid.uuid4().hex[:6]}@example.com"
            assert (await http.post(f"{api}/auth/signup", json={"email": email, "password": password})).status == 201
            login = await (await http.post(f"{api}/auth/login", json={"email": email, "password": password})).json()
            await http.post(f"{api}/auth/password/reset-request", json={"email": email})
            [requested] = outbox_events(auth_settings, PasswordResetRequestedV2.routing_key())
            secrets["reset_token"] = requested["data"]["reset_token"]
            reset = await http.post(
                f"{api}/auth/password/reset",
                json={"reset_token": secrets["reset_token"], "new_password": new_password},
            )
            assert reset.status == 204
            login = await (await http.post(f"{api}/auth/login", json={"email": email, "password": new_password})).json()
            secrets["access_token"], secrets["refresh_token"] = login["access_token"], login["refresh_token"]
            bearer = {"authorization": f"Bearer {login['access_token']}"}
            refreshed = await (
                await http.post(f"{api}/auth/token/refresh", json={"refresh_token": login["refresh_token"]})
            ).json()
            secrets["refreshed_access"], secrets["refreshed_refresh"] = (
                refreshed["access_token"],
                refreshed["refresh_token"],
            )
            bearer = {"authorization": f"Bearer {refreshed['access_token']}"}

            consent = {"text_version": "2026-11", "accepted": True}
            assert (await http.post(f"{api}/auth/me/face/consent", json=consent, headers=bearer)).status == 201
            enrolled = await http.post(
                f"{api}/auth/me/face",
                data=photo_bytes["obama.jpg"],
                headers={**bearer, "content-type": "image/jpeg"},
            )
            assert enrolled.status == 201, await enrolled.text()
            # FaceEnrolled carries the vector sealed (and leaves the outbox once published):
            # the values to look for are the ones auth stored, opened with its key.
            with create_engine(sync_url(auth_settings.database_url("auth"))).connect() as db:
                member_id, sealed = db.execute(select(FaceEnrollment.user_id, FaceEnrollment.sealed_embedding)).one()
            sealer = VectorSealer(auth_settings.sealing_keys(), purpose=FACE_SEALING_PURPOSE)
            embedding = [float(value) for value in sealer.open(member_id, sealed)]

            # Browsers put the token in the query of a WebSocket URL.
            async with http.ws_connect(f"{ws}/live/ws/runs?access_token={refreshed['access_token']}") as run:
                run_id = (await run.receive_json())["run_id"]
                shared = await http.post(f"{api}/running/v1/runs/{run_id}/share", json={"hours": 1}, headers=bearer)
                link = (await shared.json())["path"]
                secrets["share_token"] = link.rstrip("/").rsplit("/", 1)[-1]
                async with http.ws_connect(f"{ws}/live{link}") as watcher:
                    assert (await watcher.receive_json())["type"] == "watching"
                    await run.send_str(json.dumps({"type": "point", **track_points(seconds=5)[0]}))
                    assert (await watcher.receive_json())["type"] == "position"
            refused = await http.get(f"{api}/auth/me", headers={"authorization": "Bearer not-a-real-token-xyz"})
            assert refused.status == 401

    output = captured_logs.getvalue()
    assert "WebSocket" in output or "/ws/" in output  # the handshakes were logged, and looked at
    for name, secret in secrets.items():
        assert len(secret) >= 8, name
        assert secret not in output, f"{name} appears in the logs"
    assert "[redacted]" in output
    leaked = [value for value in embedding[:32] if repr(value) in output or f"{value:.6f}" in output]
    assert not leaked, "embedding values appear in the logs"


def test_uvicorns_own_formatters_still_work_on_redacted_records():
    from uvicorn.logging import AccessFormatter, DefaultFormatter

    from common.redaction import RedactSecrets

    access = logging.LogRecord(
        "uvicorn.access", logging.INFO, "", 0, '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5", "GET", "/api/live/ws/share/link-secret-1?access_token=tok-secret-2", "1.1", 200), None,
    )  # fmt: skip
    error = logging.LogRecord(
        "uvicorn.error", logging.INFO, "", 0, '%s - "WebSocket %s" [accepted]',
        ("127.0.0.1:5", "/ws/runs?access_token=tok-secret-3"), None,
    )  # fmt: skip
    error.color_message = '%s - "WebSocket %s" [accepted]'
    for record, formatter in ((access, AccessFormatter(use_colors=False)), (error, DefaultFormatter(use_colors=True))):
        assert RedactSecrets().filter(record)
        line = formatter.format(record)
        assert "secret" not in line
        assert "[redacted]" in line
