"""A local stand-in for an SMS partner speaking Twilio's Messages API. Used by the tests and
the embedded mode (no real partner configured).

- ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json``, HTTP Basic auth with the
  account SID and auth token, form fields ``To``, ``From``, ``Body`` (and optionally
  ``MessagingServiceSid`` instead of ``From``) → ``201`` with Twilio's message resource,
  or Twilio's error body: ``20003`` bad credentials (401), ``21211`` invalid ``To``,
  ``21602`` missing ``Body``, ``21604`` missing ``To`` (400), ``20429`` too many requests.

Scriptable through :class:`SmsSimState`: numbers that cannot take messages and a queue of
errors for the next sends. Every accepted message is recorded.
"""

from __future__ import annotations

import base64
import itertools
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

E164 = re.compile(r"^\+[1-9][0-9]{7,14}$")
ERRORS = {
    20003: (401, "Authenticate"),
    21211: (400, "The 'To' number {to} is not a valid phone number."),
    21602: (400, "Message body is required."),
    21604: (400, "A 'To' phone number is required."),
    20429: (429, "Too Many Requests"),
    21610: (400, "Attempt to send to unsubscribed recipient"),
}


@dataclass
class SentSms:
    to: str
    sender: str
    body: str
    sid: str


@dataclass
class SmsSimState:
    account_sid: str
    auth_token: str
    sent: list[SentSms] = field(default_factory=list)
    unsubscribed: set[str] = field(default_factory=set)
    # The next sends fail with these Twilio error codes, in order.
    failures: list[int] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=itertools.count)


def _error(code: int, **values: str) -> JSONResponse:
    status, message = ERRORS[code]
    body = {
        "code": code,
        "message": message.format(**values),
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    headers = {"retry-after": "1"} if status == 429 else None
    return JSONResponse(body, status_code=status, headers=headers)


def create_app(state: SmsSimState) -> FastAPI:
    app = FastAPI(title="Twilio Messages API (local stand-in)")
    app.state.sms = state

    @app.post("/2010-04-01/Accounts/{account_sid}/Messages.json")
    async def send(account_sid: str, request: Request) -> JSONResponse:
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        try:
            user, _, password = base64.b64decode(encoded).decode().partition(":")
        except ValueError:
            user = password = ""
        if (
            scheme.lower() != "basic"
            or account_sid != state.account_sid
            or not secrets.compare_digest(user, state.account_sid)
            or not secrets.compare_digest(password, state.auth_token)
        ):
            return _error(20003)
        form = {key: values[0] for key, values in parse_qs((await request.body()).decode(errors="replace")).items()}
        to, body = form.get("To", ""), form.get("Body", "")
        if not to:
            return _error(21604)
        if not E164.match(to):
            return _error(21211, to=to)
        if not body:
            return _error(21602)
        if state.failures:
            return _error(state.failures.pop(0), to=to)
        if to in state.unsubscribed:
            return _error(21610)
        sid = f"SM{next(state._ids):032x}"
        state.sent.append(SentSms(to, form.get("From") or form.get("MessagingServiceSid", ""), body, sid))
        now = format_datetime(datetime.now(UTC), usegmt=True)
        resource: dict[str, Any] = {
            "sid": sid,
            "account_sid": account_sid,
            "to": to,
            "from": form.get("From"),
            "body": body,
            "status": "queued",
            "num_segments": "1",
            "direction": "outbound-api",
            "date_created": now,
            "date_updated": now,
            "uri": f"/2010-04-01/Accounts/{account_sid}/Messages/{sid}.json",
        }
        return JSONResponse(resource, status_code=201)

    return app
