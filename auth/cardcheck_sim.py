"""A local stand-in for the card identity-check partner, speaking its JSON over HTTP
(see auth.identity). Used by the tests and by the embedded mode.

Card tokens decide the verdict, so every path can be exercised:
``tok_ok…`` verified when the holder name has two or more letters; ``tok_mismatch…``
rejected (name_mismatch); ``tok_stolen…`` rejected (card_reported_stolen);
``tok_fail…`` answers 503; anything else 422 unknown_card_token.
"""

from __future__ import annotations

import hmac
from datetime import date
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError


class _Check(BaseModel):
    model_config = ConfigDict(extra="forbid")
    card_token: str = Field(min_length=4, max_length=100)
    holder_name: str = Field(max_length=100)
    birth_date: date
    reference: str = Field(min_length=1, max_length=64)


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def create_app(api_key: str) -> FastAPI:
    app = FastAPI(title="card identity-check partner (simulator)")
    app.state.requests = []

    @app.post("/v1/identity-checks")
    async def identity_check(request: Request) -> Any:
        presented = request.headers.get("authorization", "").removeprefix("Bearer ")
        if not hmac.compare_digest(presented, api_key):
            return _error(401, "invalid_api_key", "unknown API key")
        try:
            check = _Check.model_validate_json(await request.body())
        except ValidationError as exc:
            return _error(400, "invalid_request", str(exc.errors()[0]["msg"]))
        app.state.requests.append(check)
        token = check.card_token
        if token.startswith("tok_fail"):
            return _error(503, "unavailable", "try again later")
        if token.startswith("tok_ok"):
            verified = len([c for c in check.holder_name if c.isalpha()]) >= 2
            return {
                "reference": check.reference,
                "status": "verified" if verified else "rejected",
                "reason": None if verified else "name_mismatch",
            }
        if token.startswith("tok_mismatch"):
            return {"reference": check.reference, "status": "rejected", "reason": "name_mismatch"}
        if token.startswith("tok_stolen"):
            return {"reference": check.reference, "status": "rejected", "reason": "card_reported_stolen"}
        return _error(422, "unknown_card_token", "no such card token")

    return app
