"""SMS through a partner speaking Twilio's Messages API (2010-04-01): one message per send.

``POST {endpoint}/2010-04-01/Accounts/{AccountSid}/Messages.json`` with HTTP Basic auth
(account SID : auth token) and a form body ``To``, ``From``, ``Body``. Success is ``201``
with the message resource (``sid``, ``status: queued``); a failure is Twilio's error body
``{"code", "message", "more_info", "status"}``. Answers map onto the same
:class:`notification.fcm.Outcome` the dispatcher already acts on.

Deliveries whose token starts with ``sms:`` go here (:class:`Channels`), so SMS shares the
push queue's claiming, retries, parking and quiet hours without a second queue.
"""

from __future__ import annotations

import json

import aiohttp

from notification.dispatch import Sender
from notification.fcm import DEFAULT_RETRY_S, Outcome, Push, SendResult

SMS_PREFIX = "sms:"
# Twilio error codes that mean the number cannot take messages: retrying cannot help and
# the number is not worth keeping (invalid, unsubscribed, landline, not mobile).
UNREACHABLE_CODES = frozenset({21211, 21610, 21614, 21612, 21408})
RATE_LIMITED_CODES = frozenset({20429, 14107})


def sms_token(phone: str) -> str:
    return SMS_PREFIX + phone


class TwilioSmsSender:
    def __init__(self, *, endpoint: str, account_sid: str, auth_token: str, sender: str, timeout_s: float = 10.0):
        self._url = f"{endpoint.rstrip('/')}/2010-04-01/Accounts/{account_sid}/Messages.json"
        self._headers = {"authorization": aiohttp.encode_basic_auth(account_sid, auth_token)}
        self._from = sender
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._client: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def send(self, push: Push) -> SendResult:
        if self._client is None:
            self._client = aiohttp.ClientSession(timeout=self._timeout, headers=self._headers)
        form = {"To": push.token.removeprefix(SMS_PREFIX), "From": self._from, "Body": push.body}
        try:
            async with self._client.post(self._url, data=form) as response:
                text = await response.text()
                retry_after = response.headers.get("retry-after")
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            return SendResult(Outcome.RETRY, f"SMS partner unreachable: {type(exc).__name__}")
        if status == 201:
            return SendResult(Outcome.SENT, message_name=_error(text)[1] or None)
        code, message = _error(text)
        detail = f"{status} {code or 'no error code'}: {message}"[:200]
        if status == 429 or code in RATE_LIMITED_CODES or status >= 500:
            return SendResult(Outcome.RETRY, detail, retry_after_s=_seconds(retry_after))
        if code in UNREACHABLE_CODES:
            return SendResult(Outcome.UNREGISTERED, detail)
        return SendResult(Outcome.REJECTED, detail)


class Channels:
    """One sender for the dispatcher: SMS deliveries to the SMS partner, the rest to FCM."""

    def __init__(self, *, push: Sender, sms: Sender) -> None:
        self._push = push
        self._sms = sms

    async def send(self, push: Push) -> SendResult:
        return await (self._sms if push.token.startswith(SMS_PREFIX) else self._push).send(push)


def _error(text: str) -> tuple[int | None, str]:
    """Twilio's error code and message (for a 201: no code, the message's sid)."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        return None, text[:120]
    if not isinstance(document, dict):
        return None, text[:120]
    code = document.get("code")
    return (code if isinstance(code, int) else None), str(document.get("message") or document.get("sid") or "")


def _seconds(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return DEFAULT_RETRY_S
