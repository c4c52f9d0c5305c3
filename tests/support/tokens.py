"""Keys and forged tokens for the JWT attack cases."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from functools import cache

import jwt
from cryptography.hazmat.primitives import serialization
from fastapi import FastAPI

from common.security import JwksCache, Role, SigningKey, TokenIssuer, jwks_document

ISSUER = "smartgym-auth"
AUDIENCE = "smartgym"


@cache
def signing_key() -> SigningKey:
    return SigningKey.generate()


@cache
def other_key() -> SigningKey:
    return SigningKey.generate()


def issuer(key: SigningKey | None = None, *, ttl: timedelta = timedelta(minutes=5)) -> TokenIssuer:
    return TokenIssuer(key or signing_key(), issuer=ISSUER, audience=AUDIENCE, ttl=ttl)


def bearer(subject: str | uuid.UUID, roles: Iterable[Role | str], branches: Iterable[str] = ()) -> dict[str, str]:
    """An Authorization header carrying a token issued now: a load that outlives the
    issuer's five-minute tokens asks for one per request."""
    return {"authorization": "Bearer " + issuer().issue(str(subject), roles, branches)}


def jwks_app() -> FastAPI:
    """auth as the services fetch it: the test signing key's JWKS and no revocations in
    force. Tests and benchmarks sign their own tokens (``issuer``) instead of running auth."""
    app = FastAPI()
    document = jwks_document([signing_key()])

    @app.get("/.well-known/jwks.json")
    async def jwks() -> dict[str, object]:
        return document

    @app.get("/revocations")
    async def revocations() -> list[object]:
        # As auth answers with none in force; without it every service retries the fetch
        # (a new TLS context each time), CPU a benchmark would count against the service.
        return []

    return app


def key_cache() -> JwksCache:
    return JwksCache.static(jwks_document([signing_key()]))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(**overrides) -> dict[str, object]:
    now = datetime.now(UTC)
    base = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "user-1",
        "iat": now,
        "exp": now + timedelta(minutes=5),
        "roles": ["customer"],
        "branches": [],
    }
    base.update(overrides)
    return {key: value for key, value in base.items() if value is not None}


def signed(payload: dict[str, object], key: SigningKey | None = None, kid: str | None = None) -> str:
    key = key or signing_key()
    return jwt.encode(payload, key.private_key, algorithm="RS256", headers={"kid": kid or key.kid})


def attack_tokens() -> dict[str, str]:
    """Every token a verifier must refuse, by name."""
    key = signing_key()
    valid = issuer().issue("user-1", ["customer"])
    header, payload, signature = valid.split(".")
    tampered_payload = json.loads(base64.urlsafe_b64decode(payload + "=="))
    tampered_payload["roles"] = ["operator"]
    tampered = f"{header}.{_b64(json.dumps(tampered_payload).encode())}.{signature}"
    none_token = ".".join(
        [
            _b64(json.dumps({"alg": "none", "typ": "JWT", "kid": key.kid}).encode()),
            _b64(json.dumps(claims(iat=1, exp=4_000_000_000)).encode()),
            "",
        ]
    )
    public_pem = key.private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    hs_header = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": key.kid}).encode())
    hs_payload = _b64(json.dumps(claims(iat=1, exp=4_000_000_000)).encode())
    import hashlib
    import hmac

    hs_signature = _b64(hmac.new(public_pem, f"{hs_header}.{hs_payload}".encode(), hashlib.sha256).digest())
    past = datetime.now(UTC) - timedelta(hours=2)
    return {
        "tampered_signature": tampered,
        "expired": signed(claims(iat=past, exp=past + timedelta(minutes=5))),
        "wrong_audience": signed(claims(aud="someone-else")),
        "wrong_issuer": signed(claims(iss="https://evil.example")),
        "alg_none": none_token,
        "hs256_with_public_key": f"{hs_header}.{hs_payload}.{hs_signature}",
        "unknown_kid": signed(claims(), key=other_key()),
        "no_exp": signed(claims(exp=None)),
        "no_sub": signed(claims(sub=None)),
        "not_yet_valid": signed(claims(nbf=datetime.now(UTC) + timedelta(hours=1))),
        "unknown_role": signed(claims(roles=["superuser"])),
        "garbage": "not.a.token",
    }
