"""A local stand-in for FCM HTTP v1 and Google's OAuth2 token endpoint, speaking their
request and response formats. Used by the tests, the benchmarks and the embedded mode.

- ``POST /token``: a JWT-bearer grant (checked: RS256, iss, scope, aud, exp; signature
  too when the service account's public key is known) → ``{"access_token", "expires_in",
  "token_type"}``.
- ``POST /v1/projects/{project}/messages:send`` with ``Authorization: Bearer <token>``:
  ``{"name": "projects/…/messages/…"}``, or FCM's error body with its ``FcmError`` code.

Scriptable through :class:`FcmSimState` (in process) or ``/_sim/*`` (another process):
unregistered tokens, a queue of errors for the next sends (with Retry-After), access
tokens revoked early. Every accepted message is recorded with its arrival time.
"""

from __future__ import annotations

import itertools
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import jwt
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from notification.fcm import GRANT_TYPE, SCOPE

ERROR_STATUS = {
    "UNREGISTERED": ("NOT_FOUND", 404),
    "SENDER_ID_MISMATCH": ("PERMISSION_DENIED", 403),
    "QUOTA_EXCEEDED": ("RESOURCE_EXHAUSTED", 429),
    "UNAVAILABLE": ("UNAVAILABLE", 503),
    "INTERNAL": ("INTERNAL", 500),
    "INVALID_ARGUMENT": ("INVALID_ARGUMENT", 400),
}


@dataclass
class Received:
    token: str
    message: dict[str, Any]
    at: float  # wall clock, to compare with the time a failure was injected


@dataclass
class FcmSimState:
    project_id: str
    public_key_pem: str | None = None
    token_ttl_s: int = 3600
    received: list[Received] = field(default_factory=list)
    unregistered: set[str] = field(default_factory=set)
    # The next sends fail like this, in order: (FCM error code, Retry-After seconds or None).
    failures: list[tuple[str, float | None]] = field(default_factory=list)
    access_tokens: set[str] = field(default_factory=set)
    token_requests: int = 0
    refused_auth: int = 0
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    def revoke_access_tokens(self) -> None:
        self.access_tokens.clear()


def _fcm_error(code: str, message: str, retry_after: float | None = None) -> JSONResponse:
    status_name, http_status = ERROR_STATUS[code]
    body = {
        "error": {
            "code": http_status,
            "message": message,
            "status": status_name,
            "details": [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": code}],
        }
    }
    headers = {"retry-after": f"{retry_after:g}"} if retry_after is not None else None
    return JSONResponse(body, status_code=http_status, headers=headers)


def create_app(state: FcmSimState) -> FastAPI:
    app = FastAPI(title="FCM HTTP v1 (local stand-in)")
    app.state.fcm = state

    @app.post("/token")
    async def token(request: Request) -> JSONResponse:
        state.token_requests += 1
        form = {key: values[0] for key, values in parse_qs((await request.body()).decode(errors="replace")).items()}
        if form.get("grant_type") != GRANT_TYPE:
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        assertion = form.get("assertion", "")
        try:
            if state.public_key_pem is not None:
                claims = jwt.decode(
                    assertion,
                    state.public_key_pem,
                    algorithms=["RS256"],
                    audience=str(request.url_for("token")),
                    options={"require": ["iss", "aud", "exp", "iat"]},
                )
            else:
                claims = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            return JSONResponse({"error": "invalid_grant", "error_description": str(exc)}, status_code=400)
        if claims.get("scope") != SCOPE:
            return JSONResponse({"error": "invalid_scope"}, status_code=400)
        access_token = "ya29.sim-" + secrets.token_urlsafe(24)
        state.access_tokens.add(access_token)
        return JSONResponse({"access_token": access_token, "expires_in": state.token_ttl_s, "token_type": "Bearer"})

    @app.post("/v1/projects/{project}/messages:send")
    async def send(project: str, request: Request) -> JSONResponse:
        presented = request.headers.get("authorization", "").removeprefix("Bearer ")
        if presented not in state.access_tokens:
            state.refused_auth += 1
            return JSONResponse(
                {
                    "error": {
                        "code": 401,
                        "message": "Request had invalid authentication credentials.",
                        "status": "UNAUTHENTICATED",
                    }
                },
                status_code=401,
            )
        if project != state.project_id:
            return _fcm_error("SENDER_ID_MISMATCH", "SenderId mismatch")
        try:
            body = await request.json()
            message = body["message"]
            device_token = message["token"]
            data = message.get("data", {})
            assert isinstance(device_token, str)
            assert all(isinstance(value, str) for value in data.values())
        except Exception:
            return _fcm_error("INVALID_ARGUMENT", "Invalid JSON payload received.")
        if state.failures:
            code, retry_after = state.failures.pop(0)
            return _fcm_error(code, f"simulated {code}", retry_after)
        if device_token in state.unregistered:
            return _fcm_error("UNREGISTERED", "Requested entity was not found.")
        state.received.append(Received(device_token, message, time.time()))
        return JSONResponse({"name": f"projects/{project}/messages/{next(state._ids)}"})

    @app.get("/_sim/messages")
    async def messages(since: int = 0) -> dict[str, Any]:
        items = state.received[since:]
        return {
            "next": since + len(items),
            "messages": [{"token": item.token, "data": item.message.get("data", {}), "at": item.at} for item in items],
        }

    @app.post("/_sim/unregistered")
    async def unregister(request: Request) -> dict[str, int]:
        state.unregistered.update(await request.json())
        return {"unregistered": len(state.unregistered)}

    return app
