"""JWT issuing and verification (RS256 with ``kid``), JWKS, roles and principals.

Rules every verifier enforces (PyJWT enforces none of them by default):

* the algorithm is pinned to RS256 before any key is chosen: ``none`` and HS256
  signed with the public key are refused;
* ``kid`` is required and must name a key of the issuer's JWKS; an unknown ``kid``
  triggers at most one JWKS refresh per ``min_refresh_interval_s``, shared by every
  concurrent caller, so a caller cannot make us hammer the issuer;
* ``exp``, ``iat``, ``sub``, ``iss`` and ``aud`` are required; ``iss``/``aud``/``exp``/``nbf``
  are checked; RSA keys shorter than 2048 bits are refused.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

log = logging.getLogger(__name__)

ALGORITHM = "RS256"
MIN_RSA_BITS = 2048
REQUIRED_CLAIMS = ("exp", "iat", "sub", "iss", "aud")


class Role(StrEnum):
    CUSTOMER = "customer"
    HELPER = "helper"
    BRANCH_OWNER = "branch_owner"
    OPERATOR = "operator"
    DEVICE = "device"
    # Another service acting on its own behalf (auth's enrolment asking facemodel for an
    # embedding). Issued by auth to itself for seconds; never assignable to a person.
    SERVICE = "service"


class InvalidToken(Exception):
    """The token is not acceptable; ``reason`` is safe to show the caller."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Principal:
    """Who is calling, as proven by a verified token."""

    subject: str
    roles: frozenset[Role]
    branches: frozenset[str] = frozenset()
    token_id: str | None = None
    expires_at: datetime | None = None
    # When the token was issued (seconds since the epoch, sub-second) and the login
    # session it belongs to: what a revocation is matched against.
    issued_at: float | None = None
    session_id: str | None = None

    def has_any_role(self, roles: Iterable[Role]) -> bool:
        return not self.roles.isdisjoint(roles)

    def may_act_for_branch(self, branch_id: str) -> bool:
        """Operators act chain-wide; everybody else only for the branches in their token."""
        return Role.OPERATOR in self.roles or branch_id in self.branches

    @property
    def user_id(self) -> uuid.UUID | None:
        """The person's account id; None for kiosks and other devices."""
        try:
            return uuid.UUID(self.subject)
        except ValueError:
            return None


def secret_digest(secret: str) -> str:
    """How random secrets (refresh and reset tokens, device secrets and tokens, shared
    links) are stored. They carry 256 bits of entropy, so a fast hash suffices; Argon2 is
    for what people choose."""
    return hashlib.sha256(secret.encode()).hexdigest()


# -- keys ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SigningKey:
    """An RSA private key with its ``kid`` (derived from the public key, RFC 7638 style)."""

    private_key: rsa.RSAPrivateKey
    kid: str = field(default="")

    def __post_init__(self) -> None:
        if self.private_key.key_size < MIN_RSA_BITS:
            raise ValueError(f"RSA keys must have at least {MIN_RSA_BITS} bits")
        if not self.kid:
            object.__setattr__(self, "kid", _thumbprint(self.private_key.public_key()))

    @classmethod
    def generate(cls, bits: int = MIN_RSA_BITS) -> SigningKey:
        return cls(rsa.generate_private_key(public_exponent=65537, key_size=bits))

    def public_jwk(self) -> dict[str, Any]:
        jwk: dict[str, Any] = RSAAlgorithm.to_jwk(self.private_key.public_key(), as_dict=True)
        jwk.update(kid=self.kid, use="sig", alg=ALGORITHM)
        return jwk

    def to_encrypted_pem(self, passphrase: bytes) -> bytes:
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(passphrase),
        )

    @classmethod
    def from_encrypted_pem(cls, pem: bytes, passphrase: bytes) -> SigningKey:
        key = serialization.load_pem_private_key(pem, password=passphrase)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError("not an RSA private key")
        return cls(key)


def _thumbprint(public_key: rsa.RSAPublicKey) -> str:
    numbers = public_key.public_numbers()

    def b64(value: int) -> str:
        raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    canonical = f'{{"e":"{b64(numbers.e)}","kty":"RSA","n":"{b64(numbers.n)}"}}'
    return base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()[:16]


def jwks_document(keys: Iterable[SigningKey]) -> dict[str, Any]:
    return {"keys": [key.public_jwk() for key in keys]}


def public_keys_from_jwks(document: Mapping[str, Any]) -> dict[str, rsa.RSAPublicKey]:
    """The usable RS256 signing keys of a JWKS document, by ``kid``; others are skipped."""
    found: dict[str, rsa.RSAPublicKey] = {}
    entries = document.get("keys")
    if not isinstance(entries, list):
        raise ValueError("JWKS document has no 'keys' list")
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("kty") != "RSA" or not entry.get("kid"):
            continue
        if entry.get("use", "sig") != "sig" or entry.get("alg", ALGORITHM) != ALGORITHM:
            continue
        try:
            key = RSAAlgorithm.from_jwk(entry)
        except (jwt.InvalidKeyError, ValueError, KeyError):
            log.warning("skipping malformed JWK", extra={"kid": entry.get("kid")})
            continue
        if not isinstance(key, rsa.RSAPublicKey) or key.key_size < MIN_RSA_BITS:
            log.warning("skipping weak or non-public JWK", extra={"kid": entry.get("kid")})
            continue
        found[str(entry["kid"])] = key
    return found


# -- issuing ---------------------------------------------------------------------------


class TokenIssuer:
    def __init__(self, key: SigningKey, *, issuer: str, audience: str, ttl: timedelta) -> None:
        self.key = key
        self.issuer = issuer
        self.audience = audience
        self.ttl = ttl

    def issue(
        self,
        subject: str,
        roles: Iterable[Role | str],
        branches: Iterable[str] = (),
        *,
        now: datetime | None = None,
        session_id: str | None = None,
    ) -> str:
        issued = now or datetime.now(UTC)
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": subject,
            # Sub-second (RFC 7519 NumericDate may be fractional): a revocation of "every
            # token issued before now" must not also refuse the login a second later.
            "iat": (iat := round(issued.timestamp(), 3)),
            "nbf": iat,
            "exp": iat + self.ttl.total_seconds(),
            "jti": uuid.uuid4().hex,
            "roles": sorted(Role(role).value for role in roles),
            "branches": sorted(set(branches)),
        }
        if session_id is not None:
            claims["sid"] = session_id
        return jwt.encode(claims, self.key.private_key, algorithm=ALGORITHM, headers={"kid": self.key.kid})


# -- verifying -------------------------------------------------------------------------

KeyFetcher = Callable[[], Awaitable[Mapping[str, Any]]]


class JwksCache:
    """Public keys by ``kid``, refreshed from the issuer at a bounded rate.

    Refreshes are single-flight (one fetch however many callers wait) and at most one per
    ``min_refresh_interval_s``: a flood of tokens with random ``kid`` values costs the
    issuer one request per interval, not one per token.
    """

    def __init__(self, fetch: KeyFetcher, *, min_refresh_interval_s: float = 30.0) -> None:
        self._fetch = fetch
        self._min_interval = min_refresh_interval_s
        self._keys: dict[str, rsa.RSAPublicKey] = {}
        self._last_refresh: float | None = None
        self._lock = asyncio.Lock()

    @classmethod
    def static(cls, document: Mapping[str, Any]) -> JwksCache:
        async def fetch() -> Mapping[str, Any]:
            return document

        return cls(fetch, min_refresh_interval_s=0)

    async def key(self, kid: str) -> rsa.RSAPublicKey | None:
        key = self._keys.get(kid)
        if key is not None:
            return key
        await self.refresh(force=False)
        return self._keys.get(kid)

    async def refresh(self, *, force: bool) -> None:
        observed = self._last_refresh
        async with self._lock:
            if self._last_refresh != observed and not force:
                return  # somebody refreshed while we waited
            now = time.monotonic()
            if not force and self._last_refresh is not None and now - self._last_refresh < self._min_interval:
                return
            self._last_refresh = now
            try:
                document = await self._fetch()
                self._keys = public_keys_from_jwks(document)
            except Exception:
                # An issuer that is down (say, still starting) is asked again after a
                # second rather than a whole interval; still bounded for attackers.
                self._last_refresh = now - self._min_interval + min(1.0, self._min_interval)
                log.warning("JWKS refresh failed; keeping %d known keys", len(self._keys), exc_info=True)


class TokenVerifier:
    """Verifies access tokens; remembers recently verified ones.

    A client sends the same token with every request until it expires, so a verified
    token's principal is kept (bounded LRU, at most ``cache_ttl_s`` and never past the
    token's ``exp``). A key withdrawn from the JWKS therefore stops being honoured within
    ``cache_ttl_s`` rather than at once. ``clock`` times the cache only; a token's own
    ``exp`` and ``nbf`` are checked against the wall clock.
    """

    def __init__(
        self,
        keys: JwksCache,
        *,
        issuer: str,
        audience: str,
        leeway_s: float = 5.0,
        cache_size: int = 10_000,
        cache_ttl_s: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._keys = keys
        self._clock = clock
        self._issuer = issuer
        self._audience = audience
        self._leeway = leeway_s
        self._cache: OrderedDict[str, tuple[float, Principal]] = OrderedDict()
        self._revocations = Revocations()
        self._cache_size = cache_size
        self._cache_ttl_s = cache_ttl_s

    @property
    def revocations(self) -> Revocations:
        return self._revocations

    @property
    def remembered(self) -> int:
        """How many verified tokens are held (for memory checks)."""
        return len(self._cache)

    async def verify(self, token: str) -> Principal:
        cached = self._cache.get(token)
        now = self._clock()
        if cached is not None:
            if cached[0] > now:
                self._cache.move_to_end(token)
                return self._unless_revoked(cached[1])
            del self._cache[token]
        principal = self._unless_revoked(await self._verify(token))
        if self._cache_size and principal.expires_at is not None:
            valid_until = min(principal.expires_at.timestamp(), now + self._cache_ttl_s)
            self._cache[token] = (valid_until, principal)
            # Expired entries go from the least recently used end: a token seen once (a
            # visitor, a phone that refreshed its token) would otherwise stay until the
            # cache is full, and the process grow by ~1.5 KiB per token up to that size.
            while self._cache:
                oldest = next(iter(self._cache.values()))
                if oldest[0] > now and len(self._cache) <= self._cache_size:
                    break
                self._cache.popitem(last=False)
        return principal

    def _unless_revoked(self, principal: Principal) -> Principal:
        if self._revocations.refuses(principal):
            raise InvalidToken("token revoked")
        return principal

    async def _verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise InvalidToken("malformed token") from exc
        if header.get("alg") != ALGORITHM:
            raise InvalidToken("token algorithm not allowed")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise InvalidToken("token has no key id")
        key = await self._keys.key(kid)
        if key is None:
            raise InvalidToken("token signed by an unknown key")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": list(REQUIRED_CLAIMS)},
            )
        except jwt.ExpiredSignatureError as exc:
            raise InvalidToken("token expired") from exc
        except jwt.InvalidAudienceError as exc:
            raise InvalidToken("token audience not accepted") from exc
        except jwt.InvalidIssuerError as exc:
            raise InvalidToken("token issuer not accepted") from exc
        except jwt.ImmatureSignatureError as exc:
            raise InvalidToken("token not valid yet") from exc
        except jwt.MissingRequiredClaimError as exc:
            raise InvalidToken(f"token lacks the {exc.claim!r} claim") from exc
        except jwt.PyJWTError as exc:
            raise InvalidToken("token signature or claims invalid") from exc
        return _principal(claims)


class Revocations:
    """Tokens refused before they expire: every token of a subject issued before a moment
    (password or role changed, device revoked, account deleted), or every token of one
    session (logout; a single token by its ``jti``).

    Checked on every request, so a lookup is two dict reads. Entries are forgotten once
    every token they could match has expired (``expires_at``); the sweep is amortised
    over additions, so the maps stay as small as the tokens' lifetime allows.
    """

    def __init__(self) -> None:
        self._subjects: dict[str, tuple[float, float]] = {}  # subject -> (issued_before, expires_at)
        self._sessions: dict[str, float] = {}  # sid or jti -> expires_at
        self._added_since_sweep = 0

    def __len__(self) -> int:
        return len(self._subjects) + len(self._sessions)

    def add(
        self, *, subject: str | None = None, session_id: str | None = None, issued_before: float, expires_at: float
    ) -> None:
        if subject is not None:
            previous = self._subjects.get(subject)
            if previous is not None:  # the later cut-off and the longer life win
                issued_before, expires_at = max(previous[0], issued_before), max(previous[1], expires_at)
            self._subjects[subject] = (issued_before, expires_at)
        if session_id is not None:
            self._sessions[session_id] = max(self._sessions.get(session_id, 0.0), expires_at)
        self._added_since_sweep += 1
        if self._added_since_sweep >= 1000:
            self.sweep(time.time())

    def sweep(self, now: float) -> None:
        self._subjects = {key: value for key, value in self._subjects.items() if value[1] > now}
        self._sessions = {key: until for key, until in self._sessions.items() if until > now}
        self._added_since_sweep = 0

    def refuses(self, principal: Principal) -> bool:
        now = time.time()
        by_subject = self._subjects.get(principal.subject)
        # A token without iat cannot prove it is newer than the cut-off.
        if (
            by_subject is not None
            and by_subject[1] > now
            and (principal.issued_at is None or principal.issued_at < by_subject[0])
        ):
            return True
        for key in (principal.session_id, principal.token_id):
            if key is not None:
                until = self._sessions.get(key)
                if until is not None and until > now:
                    return True
        return False


def _principal(claims: Mapping[str, Any]) -> Principal:
    subject = claims["sub"]
    raw_roles = claims.get("roles", [])
    raw_branches = claims.get("branches", [])
    if not isinstance(subject, str) or not subject:
        raise InvalidToken("token subject invalid")
    if not isinstance(raw_roles, list) or not isinstance(raw_branches, list):
        raise InvalidToken("token roles/branches invalid")
    try:
        roles = frozenset(Role(role) for role in raw_roles)
    except ValueError as exc:
        raise InvalidToken("token carries an unknown role") from exc
    if not all(isinstance(branch, str) for branch in raw_branches):
        raise InvalidToken("token branches invalid")
    expires = claims.get("exp")
    return Principal(
        subject=subject,
        roles=roles,
        branches=frozenset(raw_branches),
        token_id=claims.get("jti") if isinstance(claims.get("jti"), str) else None,
        expires_at=datetime.fromtimestamp(expires, UTC) if isinstance(expires, int | float) else None,
        issued_at=float(issued) if isinstance(issued := claims.get("iat"), int | float) else None,
        session_id=claims.get("sid") if isinstance(claims.get("sid"), str) else None,
    )
