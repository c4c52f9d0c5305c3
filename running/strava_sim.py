"""A local stand-in for Strava's OAuth2 token endpoint and upload API, speaking their
request and response formats (see running.strava). For tests and the embedded mode.

Scriptable through :class:`StravaSimState`: a queue of failures for the next requests
(429 with Strava's rate-limit headers, or 5xx), how many polls an upload takes to be
processed; every upload is recorded with its file."""

from __future__ import annotations

import itertools
import secrets
import time
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

PROCESSING = "Your activity is still being processed."
READY = "Your activity is ready."


@dataclass
class StravaSimState:
    client_id: str = "1234"
    client_secret: str = "sim-secret"  # noqa: S105 - a test stand-in's
    token_lifetime_s: float = 6 * 3600
    polls_to_process: int = 2
    retry_after: str = "1"  # seconds, on a 429
    failures: list[int] = field(default_factory=list)  # statuses for the next requests
    access: dict[str, float] = field(default_factory=dict)  # access token -> expires_at
    refresh: dict[str, int] = field(default_factory=dict)  # refresh token -> athlete id
    uploads: dict[int, dict[str, Any]] = field(default_factory=dict)
    requests: int = 0
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1000))

    def issue(self, athlete: int) -> dict[str, Any]:
        access, refresh = secrets.token_hex(20), secrets.token_hex(20)
        expires_at = int(time.time() + self.token_lifetime_s)
        self.access[access] = expires_at
        self.refresh[refresh] = athlete
        return {"token_type": "Bearer", "access_token": access, "refresh_token": refresh,
                "expires_at": expires_at, "expires_in": int(self.token_lifetime_s)}  # fmt: skip


def create_app(state: StravaSimState) -> FastAPI:
    app = FastAPI(title="Strava stand-in")

    def failure() -> JSONResponse | None:
        state.requests += 1
        if not state.failures:
            return None
        status = state.failures.pop(0)
        if status == 429:
            return JSONResponse(
                {"message": "Rate Limit Exceeded", "errors": [{"resource": "Application", "code": "exceeded"}]},
                429,
                headers={
                    "X-RateLimit-Limit": "200,2000",
                    "X-RateLimit-Usage": "201,540",
                    "Retry-After": state.retry_after,
                },
            )
        return JSONResponse({"message": "Service Unavailable"}, status)

    def authorised(request: Request) -> bool:
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        return state.access.get(token, 0) > time.time()

    unauthorised = {"message": "Authorization Error",
                    "errors": [{"resource": "Athlete", "field": "access_token", "code": "invalid"}]}  # fmt: skip

    @app.post("/oauth/token")
    async def token(request: Request) -> JSONResponse:
        if (failed := failure()) is not None:
            return failed
        form = {key: values[0] for key, values in parse_qs((await request.body()).decode()).items()}
        if form.get("client_id") != state.client_id or form.get("client_secret") != state.client_secret:
            return JSONResponse({"message": "Bad Request", "errors": [{"resource": "Application",
                                 "field": "client_id", "code": "invalid"}]}, 400)  # fmt: skip
        if form.get("grant_type") == "authorization_code" and form.get("code"):
            athlete = abs(hash(form["code"])) % 10**8
            return JSONResponse(state.issue(athlete) | {"athlete": {"id": athlete, "firstname": "Sim"}})
        if form.get("grant_type") == "refresh_token" and form.get("refresh_token") in state.refresh:
            athlete = state.refresh.pop(form["refresh_token"])  # Strava rotates refresh tokens
            return JSONResponse(state.issue(athlete))
        return JSONResponse({"message": "Bad Request", "errors": [{"resource": "RefreshToken",
                             "field": "refresh_token", "code": "invalid"}]}, 400)  # fmt: skip

    @app.post("/api/v3/uploads", status_code=201)
    async def upload(request: Request) -> JSONResponse:
        if (failed := failure()) is not None:
            return failed
        if not authorised(request):
            return JSONResponse(unauthorised, 401)
        header = f"Content-Type: {request.headers.get('content-type', '')}\r\n\r\n".encode()
        message = BytesParser(policy=HTTP).parsebytes(header + await request.body())
        parts = {part.get_param("name", header="content-disposition"): part for part in message.iter_parts()}
        fields = {name: str(part.get_content()).strip() for name, part in parts.items() if name != "file"}
        if "file" not in parts or fields.get("data_type") not in ("fit", "gpx", "tcx", "fit.gz", "gpx.gz", "tcx.gz"):
            return JSONResponse({"message": "Bad Request", "errors": [{"resource": "Upload", "field": "data",
                                 "code": "empty"}]}, 400)  # fmt: skip
        upload_id = next(state._ids)
        duplicate = next(
            (item for item in state.uploads.values() if item["external_id"] == fields.get("external_id")), None
        )
        state.uploads[upload_id] = {
            "id": upload_id,
            "external_id": fields.get("external_id"),
            "name": fields.get("name"),
            "data_type": fields["data_type"],
            "file": parts["file"].get_payload(decode=True),
            "polls": 0,
            "error": f"{fields.get('external_id')} duplicate of activity {duplicate['activity']}"
            if duplicate
            else None,
            "activity": 9_000_000 + upload_id,
        }
        return JSONResponse(_view(state.uploads[upload_id], state.polls_to_process), 201)

    @app.get("/api/v3/uploads/{upload_id}")
    async def status(upload_id: int, request: Request) -> JSONResponse:
        if (failed := failure()) is not None:
            return failed
        if not authorised(request):
            return JSONResponse(unauthorised, 401)
        item = state.uploads.get(upload_id)
        if item is None:
            return JSONResponse({"message": "Record Not Found"}, 404)
        item["polls"] += 1
        return JSONResponse(_view(item, state.polls_to_process))

    return app


def _view(item: dict[str, Any], polls_to_process: int) -> dict[str, Any]:
    ready = item["error"] is None and item["polls"] >= polls_to_process
    return {
        "id": item["id"],
        "id_str": str(item["id"]),
        "external_id": item["external_id"],
        "error": item["error"],
        "status": "There was an error processing your activity." if item["error"] else READY if ready else PROCESSING,
        "activity_id": item["activity"] if ready else None,
    }
