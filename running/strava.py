"""A Strava client: OAuth2 code exchange and refresh, activity upload, and polling the
upload until Strava has processed it. Retries with backoff on 429 and 5xx (Retry-After
honoured, else exponential with jitter); a request Strava refused for good is not retried.

Wire format (https://developers.strava.com/docs/reference/): ``POST /oauth/token`` (form)
→ ``{"access_token", "refresh_token", "expires_at", "athlete"?}``; ``POST /api/v3/uploads``
(multipart: file, data_type, name, external_id) → ``{"id", "status", "error",
"activity_id"}``; ``GET /api/v3/uploads/{id}`` → the same, ``activity_id`` once ready.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx

READY = "Your activity is ready."
RETRY_STATUSES = {429, 500, 502, 503, 504}


class StravaError(Exception):
    """Strava refused (or kept failing); ``status`` is the last HTTP status, if any."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class StravaTokens:
    access_token: str
    refresh_token: str
    expires_at: float
    athlete_id: int | None = None

    def expired(self, *, margin_s: float = 60.0) -> bool:
        return self.expires_at - margin_s <= time.time()


@dataclass(frozen=True)
class UploadResult:
    upload_id: int
    status: str
    activity_id: int | None
    error: str | None


class StravaClient:
    def __init__(
        self,
        *,
        base_url: str,
        client_id: str,
        client_secret: str,
        attempts: int = 5,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        timeout_s: float = 30.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._http = httpx.AsyncClient(base_url=base_url, timeout=timeout_s)
        self._client_id, self._client_secret = client_id, client_secret
        self._attempts, self._backoff_s, self._max_backoff_s = attempts, backoff_s, max_backoff_s
        self._sleep = sleep
        self.retries = 0  # for metrics and tests

    async def close(self) -> None:
        await self._http.aclose()

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        last: httpx.Response | None = None
        for attempt in range(self._attempts):
            try:
                response = await self._http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                if attempt == self._attempts - 1:
                    raise StravaError(f"Strava unreachable: {exc}") from exc
                await self._pause(attempt, None)
                continue
            if response.status_code not in RETRY_STATUSES:
                return response
            last = response
            if attempt < self._attempts - 1:
                await self._pause(attempt, response.headers.get("retry-after"))
        assert last is not None
        raise StravaError(f"Strava kept answering {last.status_code}", last.status_code)

    async def _pause(self, attempt: int, retry_after: str | None) -> None:
        self.retries += 1
        if retry_after is not None and retry_after.isdigit():
            delay = float(retry_after)
        else:  # full jitter: replicas that failed together do not come back together
            delay = random.uniform(0, min(self._max_backoff_s, self._backoff_s * 2**attempt))
        await self._sleep(min(delay, self._max_backoff_s))

    async def _tokens(self, form: dict[str, str]) -> StravaTokens:
        response = await self._request(
            "POST",
            "/oauth/token",
            data={"client_id": self._client_id, "client_secret": self._client_secret, **form},
        )
        if response.status_code != 200:
            raise StravaError(f"Strava refused the grant: {_message(response)}", response.status_code)
        body = response.json()
        athlete = body.get("athlete") or {}
        return StravaTokens(
            access_token=str(body["access_token"]),
            refresh_token=str(body["refresh_token"]),
            expires_at=float(body["expires_at"]),
            athlete_id=int(athlete["id"]) if "id" in athlete else None,
        )

    async def exchange_code(self, code: str) -> StravaTokens:
        return await self._tokens({"grant_type": "authorization_code", "code": code})

    async def refresh(self, refresh_token: str) -> StravaTokens:
        return await self._tokens({"grant_type": "refresh_token", "refresh_token": refresh_token})

    async def upload(
        self, tokens: StravaTokens, *, document: bytes, data_type: str, name: str, external_id: str
    ) -> UploadResult:
        response = await self._request(
            "POST",
            "/api/v3/uploads",
            headers={"authorization": f"Bearer {tokens.access_token}"},
            data={"data_type": data_type, "name": name, "external_id": external_id},
            files={"file": (f"{external_id}.{data_type}", document, "application/octet-stream")},
        )
        if response.status_code not in (200, 201):
            raise StravaError(f"upload refused: {_message(response)}", response.status_code)
        return _result(response.json())

    async def upload_status(self, tokens: StravaTokens, upload_id: int) -> UploadResult:
        response = await self._request(
            "GET", f"/api/v3/uploads/{upload_id}", headers={"authorization": f"Bearer {tokens.access_token}"}
        )
        if response.status_code != 200:
            raise StravaError(f"status refused: {_message(response)}", response.status_code)
        return _result(response.json())

    async def wait_processed(
        self, tokens: StravaTokens, upload_id: int, *, poll_s: float = 1.0, timeout_s: float = 30.0
    ) -> UploadResult:
        """Poll until Strava has made an activity of the upload (or said why not)."""
        deadline = time.monotonic() + timeout_s
        while True:
            result = await self.upload_status(tokens, upload_id)
            if result.activity_id is not None or result.error or time.monotonic() >= deadline:
                return result
            await self._sleep(poll_s)


def _result(body: dict[str, Any]) -> UploadResult:
    return UploadResult(
        upload_id=int(body["id"]),
        status=str(body.get("status") or ""),
        activity_id=int(body["activity_id"]) if body.get("activity_id") is not None else None,
        error=str(body["error"]) if body.get("error") else None,
    )


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}"
    return str(body.get("message") or body.get("error") or f"HTTP {response.status_code}")[:200]
