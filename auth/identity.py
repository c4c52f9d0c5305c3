"""Identity check by card, through the external verification partner.

The customer app tokenises the card with the partner's SDK; auth never sees a card
number. It sends the partner's card token with the holder's name and birth date and
gets a verdict. Wire format (JSON over HTTPS, bearer API key)::

    POST /v1/identity-checks
    {"card_token": "tok_…", "holder_name": "…", "birth_date": "YYYY-MM-DD", "reference": "<uuid>"}
    200 {"reference": "<uuid>", "status": "verified" | "rejected", "reason": null | "name_mismatch" | …}
    4xx {"error": {"code": "…", "message": "…"}}
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date
from typing import Literal, Protocol

import httpx
from pydantic import BaseModel, ValidationError

from common.breaker import AsyncCircuitBreaker, CircuitOpenError
from common.http import ServiceClient


@dataclass(frozen=True)
class IdentityVerdict:
    verified: bool
    reference: uuid.UUID
    reason: str | None


class IdentityCheckUnavailable(Exception):
    """The partner could not be asked (down, slow, circuit open, or answered nonsense)."""


class IdentityCheckRefused(Exception):
    """The partner refused the request itself (bad token format, unknown card token)."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


class IdentityCheck(Protocol):
    async def verify(self, *, card_token: str, holder_name: str, birth_date: date) -> IdentityVerdict: ...


class _Answer(BaseModel):
    reference: uuid.UUID
    status: Literal["verified", "rejected"]
    reason: str | None = None


class _Error(BaseModel):
    class Detail(BaseModel):
        code: str
        message: str = ""

    error: Detail


class CardCheckClient:
    """HTTP client of the partner, behind a circuit breaker."""

    def __init__(self, base_url: str, api_key: str, *, timeout_s: float, breaker: AsyncCircuitBreaker) -> None:
        self._api_key = api_key
        self._client = ServiceClient("cardcheck", base_url, breaker=breaker, timeout_s=timeout_s)

    async def verify(self, *, card_token: str, holder_name: str, birth_date: date) -> IdentityVerdict:
        reference = uuid.uuid4()
        try:
            response = await self._client.request(
                "POST",
                "/v1/identity-checks",
                headers={"authorization": f"Bearer {self._api_key}"},
                json={
                    "card_token": card_token,
                    "holder_name": holder_name,
                    "birth_date": birth_date.isoformat(),
                    "reference": str(reference),
                },
            )
        except (httpx.HTTPError, CircuitOpenError) as exc:
            raise IdentityCheckUnavailable(type(exc).__name__) from exc
        if response.status_code in (401, 403):
            # Our API key is wrong or revoked: an operator's problem, not the member's.
            raise IdentityCheckUnavailable(f"partner refused our credentials ({response.status_code})")
        if 400 <= response.status_code < 500:
            try:
                raise IdentityCheckRefused(_Error.model_validate_json(response.content).error.code)
            except ValidationError as exc:
                raise IdentityCheckUnavailable(f"partner answered {response.status_code}") from exc
        if response.status_code != 200:
            raise IdentityCheckUnavailable(f"partner answered {response.status_code}")
        try:
            answer = _Answer.model_validate_json(response.content)
        except ValidationError as exc:
            raise IdentityCheckUnavailable("partner answer malformed") from exc
        if answer.reference != reference:
            raise IdentityCheckUnavailable("partner answered another request")
        return IdentityVerdict(answer.status == "verified", answer.reference, answer.reason)

    async def aclose(self) -> None:
        await self._client.aclose()
