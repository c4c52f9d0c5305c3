"""Firebase Cloud Messaging, HTTP v1: one message per device token.

Authentication is Google's OAuth2 service-account flow: we sign a JWT grant (RS256,
``scope=firebase.messaging``, ``aud=token_uri``) with the service account's key, trade it
at the token endpoint for an access token, and cache that until shortly before it
expires. A 401 from FCM (revoked or expired early) drops the cached token and the send is
tried once more with a fresh one.

Every answer becomes one :class:`Outcome` the dispatcher acts on: ``sent``;
``unregistered`` (the app was uninstalled: forget the token); ``retry`` (quota, outage:
come back after ``retry_after_s``, FCM's own Retry-After when it sends one); ``rejected``
(our message is wrong: retrying cannot help).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import aiohttp
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ASSERTION_TTL_S = 3600
REFRESH_MARGIN_S = 60.0
DEFAULT_RETRY_S = 5.0
# FCM's error codes (google.firebase.fcm.v1.FcmError.errorCode) and what they mean for us.
UNREGISTERED_CODES = frozenset({"UNREGISTERED", "SENDER_ID_MISMATCH"})
RETRY_CODES = frozenset({"QUOTA_EXCEEDED", "UNAVAILABLE", "INTERNAL"})


@dataclass(frozen=True)
class ServiceAccount:
    client_email: str
    private_key_pem: str
    token_uri: str
    project_id: str

    @classmethod
    def from_file(cls, path: Path, *, token_uri: str | None = None) -> ServiceAccount:
        document = json.loads(path.read_text())
        return cls(
            client_email=document["client_email"],
            private_key_pem=document["private_key"],
            token_uri=token_uri or document["token_uri"],
            project_id=document["project_id"],
        )

    def to_file(self, path: Path) -> Path:
        """Write the account in Google's key-file format (what :meth:`from_file` reads)."""
        document = {
            "type": "service_account",
            "project_id": self.project_id,
            "client_email": self.client_email,
            "private_key": self.private_key_pem,
            "token_uri": self.token_uri,
        }
        path.write_text(json.dumps(document))
        path.chmod(0o600)
        return path

    @classmethod
    def ephemeral(cls, project_id: str, token_uri: str) -> ServiceAccount:
        """A throwaway account for the local FCM stand-in (never valid at Google)."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        return cls(f"smartgym-local@{project_id}.iam.gserviceaccount.com", pem, token_uri, project_id)

    def public_key_pem(self) -> str:
        key = serialization.load_pem_private_key(self.private_key_pem.encode(), password=None)
        return (
            key.public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode()
        )


class Outcome(StrEnum):
    SENT = "sent"
    UNREGISTERED = "unregistered"
    RETRY = "retry"
    REJECTED = "rejected"


@dataclass(frozen=True)
class SendResult:
    outcome: Outcome
    detail: str = ""
    retry_after_s: float | None = None
    message_name: str | None = None


@dataclass(frozen=True)
class Push:
    token: str
    title: str
    body: str
    data: dict[str, str]
    critical: bool


class TokenEndpointError(Exception):
    pass


class AccessTokens:
    """The OAuth2 access token, fetched when missing or about to expire (one fetch at a time)."""

    def __init__(self, account: ServiceAccount, session: Callable[[], aiohttp.ClientSession]) -> None:
        self._account = account
        self._session = session
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = asyncio.Lock()
        self.fetches = 0

    async def current(self) -> str:
        if self._token is not None and time.monotonic() < self._expires_at - REFRESH_MARGIN_S:
            return self._token
        async with self._lock:
            if self._token is None or time.monotonic() >= self._expires_at - REFRESH_MARGIN_S:
                await self._fetch()
            assert self._token is not None
            return self._token

    def invalidate(self, token: str) -> None:
        if self._token == token:
            self._token = None

    async def _fetch(self) -> None:
        now = int(time.time())
        assertion = jwt.encode(
            {
                "iss": self._account.client_email,
                "scope": SCOPE,
                "aud": self._account.token_uri,
                "iat": now,
                "exp": now + ASSERTION_TTL_S,
            },
            self._account.private_key_pem,
            algorithm="RS256",
        )
        form = {"grant_type": GRANT_TYPE, "assertion": assertion}
        try:
            async with self._session().post(self._account.token_uri, data=form) as response:
                document = await response.json(content_type=None)
                if response.status != 200 or "access_token" not in document:
                    raise TokenEndpointError(f"token endpoint answered {response.status}: {str(document)[:200]}")
        except (aiohttp.ClientError, TimeoutError, json.JSONDecodeError) as exc:
            raise TokenEndpointError(f"token endpoint unreachable: {type(exc).__name__}") from exc
        self.fetches += 1
        self._token = str(document["access_token"])
        self._expires_at = time.monotonic() + float(document.get("expires_in", 3600))


class FcmSender:
    def __init__(self, account: ServiceAccount, *, endpoint: str, timeout_s: float = 10.0, connections: int = 100):
        self._account = account
        self._url = f"{endpoint.rstrip('/')}/v1/projects/{account.project_id}/messages:send"
        self._timeout_s = timeout_s
        self._connections = connections
        self._client: aiohttp.ClientSession | None = None
        self.tokens = AccessTokens(account, self._session)

    def _session(self) -> aiohttp.ClientSession:
        # Made on first use: aiohttp sessions belong to the running event loop.
        if self._client is None:
            self._client = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._timeout_s),
                connector=aiohttp.TCPConnector(limit=self._connections),
            )
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()

    async def send(self, push: Push) -> SendResult:
        try:
            result = await self._send_once(push)
            if result is None:  # our access token was refused: once more with a fresh one
                result = await self._send_once(push)
        except TokenEndpointError as exc:
            return SendResult(Outcome.RETRY, str(exc), retry_after_s=DEFAULT_RETRY_S)
        except (aiohttp.ClientError, TimeoutError) as exc:
            return SendResult(Outcome.RETRY, f"FCM unreachable: {type(exc).__name__}")
        return result or SendResult(Outcome.RETRY, "FCM refused two fresh access tokens", DEFAULT_RETRY_S)

    async def _send_once(self, push: Push) -> SendResult | None:
        access_token = await self.tokens.current()
        headers = {"authorization": f"Bearer {access_token}", "content-type": "application/json; UTF-8"}
        async with self._session().post(self._url, json={"message": _message(push)}, headers=headers) as response:
            text = await response.text()
            if response.status == 200:
                return SendResult(Outcome.SENT, message_name=_field(text, "name"))
            if response.status == 401:
                self.tokens.invalidate(access_token)
                return None
            return _failure(response.status, text, response.headers.get("retry-after"))


def _message(push: Push) -> dict[str, Any]:
    android: dict[str, Any] = {"priority": "high" if push.critical else "normal"}
    apns_headers = {"apns-priority": "10" if push.critical else "5"}
    notice = push.data.get("message_id")
    if notice:
        # A push is sent again when its sender died before recording FCM's answer; with
        # the notice as its tag (Android) and collapse id (iOS) the second copy replaces
        # the first on the phone instead of showing beside it.
        android["notification"] = {"tag": f"notice-{notice}"}
        apns_headers["apns-collapse-id"] = f"notice-{notice}"
    return {
        "token": push.token,
        "notification": {"title": push.title, "body": push.body},
        "data": push.data,  # FCM wants string values only; the caller guarantees it
        "android": android,
        "apns": {"headers": apns_headers},
    }


def _field(text: str, name: str) -> str | None:
    try:
        value = json.loads(text).get(name)
    except (json.JSONDecodeError, AttributeError):
        return None
    return str(value) if value is not None else None


def _failure(status: int, text: str, retry_after: str | None) -> SendResult:
    code, message = _error_code(text)
    detail = f"{status} {code or 'no error code'}: {message}"[:200]
    if code in UNREGISTERED_CODES or status == 404:
        return SendResult(Outcome.UNREGISTERED, detail)
    if code in RETRY_CODES or status in (429, 500, 502, 503, 504):
        return SendResult(Outcome.RETRY, detail, retry_after_s=_retry_after(retry_after))
    return SendResult(Outcome.REJECTED, detail)


def _error_code(text: str) -> tuple[str | None, str]:
    try:
        error = json.loads(text)["error"]
    except (json.JSONDecodeError, KeyError, TypeError):
        return None, text[:120]
    for detail in error.get("details", ()):
        if isinstance(detail, dict) and detail.get("@type", "").endswith("google.firebase.fcm.v1.FcmError"):
            return detail.get("errorCode"), str(error.get("message", ""))
    return error.get("status"), str(error.get("message", ""))


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds (FCM sends seconds; an HTTP date is read as 'soon')."""
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return DEFAULT_RETRY_S
