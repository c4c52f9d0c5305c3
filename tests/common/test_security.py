from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from common.security import InvalidToken, JwksCache, Role, SigningKey, TokenVerifier, jwks_document
from tests.support import tokens


def verifier(cache: JwksCache | None = None) -> TokenVerifier:
    return TokenVerifier(cache or tokens.key_cache(), issuer=tokens.ISSUER, audience=tokens.AUDIENCE)


async def test_valid_token_gives_the_principal():
    token = tokens.issuer().issue("user-1", [Role.BRANCH_OWNER], branches=["b-1"])
    principal = await verifier().verify(token)
    assert principal.subject == "user-1"
    assert principal.roles == {Role.BRANCH_OWNER}
    assert principal.may_act_for_branch("b-1")
    assert not principal.may_act_for_branch("b-2")


@pytest.mark.parametrize("case", sorted(tokens.attack_tokens()))
async def test_attack_tokens_are_refused(case):
    with pytest.raises(InvalidToken) as refused:
        await verifier().verify(tokens.attack_tokens()[case])
    assert refused.value.reason  # a reason the caller may see


async def test_missing_exp_names_the_claim():
    with pytest.raises(InvalidToken, match="'exp'"):
        await verifier().verify(tokens.attack_tokens()["no_exp"])


async def test_unknown_kid_flood_costs_one_refresh_per_interval():
    fetches = 0

    async def fetch():
        nonlocal fetches
        fetches += 1
        await asyncio.sleep(0.01)
        return jwks_document([tokens.signing_key()])

    cache = JwksCache(fetch, min_refresh_interval_s=60)
    check = verifier(cache)
    forged = [tokens.signed(tokens.claims(), kid=f"random-{n}") for n in range(200)]
    results = await asyncio.gather(*(check.verify(token) for token in forged), return_exceptions=True)
    assert all(isinstance(result, InvalidToken) for result in results)
    assert fetches == 1


async def test_new_signing_key_is_picked_up_after_rotation():
    keys = [tokens.signing_key()]

    async def fetch():
        return jwks_document(keys)

    check = verifier(JwksCache(fetch, min_refresh_interval_s=0))
    await check.verify(tokens.issuer().issue("u", [Role.CUSTOMER]))
    rotated = tokens.other_key()
    keys.append(rotated)
    principal = await check.verify(tokens.issuer(rotated).issue("u", [Role.CUSTOMER]))
    assert principal.subject == "u"


def test_weak_rsa_keys_are_refused():
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(ValueError, match="2048"):
        SigningKey(weak)


async def test_weak_keys_in_a_jwks_document_are_ignored():
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    from jwt.algorithms import RSAAlgorithm

    jwk = RSAAlgorithm.to_jwk(weak.public_key(), as_dict=True) | {"kid": "weak", "use": "sig", "alg": "RS256"}
    import warnings

    import jwt as pyjwt

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PyJWT rightly warns about signing with this key
        token = pyjwt.encode(tokens.claims(), weak, algorithm="RS256", headers={"kid": "weak"})
    with pytest.raises(InvalidToken, match="unknown key"):
        await verifier(JwksCache.static({"keys": [jwk]})).verify(token)


def test_encrypted_pem_round_trip():
    key = tokens.signing_key()
    restored = SigningKey.from_encrypted_pem(key.to_encrypted_pem(b"secret"), b"secret")
    assert restored.kid == key.kid


async def test_remembered_tokens_still_expire_on_time():
    check = TokenVerifier(tokens.key_cache(), issuer=tokens.ISSUER, audience=tokens.AUDIENCE, leeway_s=0)
    token = tokens.issuer(ttl=timedelta(seconds=1.5)).issue("u", [Role.CUSTOMER])
    assert (await check.verify(token)).subject == "u"
    assert (await check.verify(token)).subject == "u"  # from the cache
    await asyncio.sleep(1.6)
    with pytest.raises(InvalidToken, match="expired"):
        await check.verify(token)


async def test_tokens_seen_once_are_not_held_past_their_cache_time():
    # A process that sees many tokens once (visitors, refreshed tokens) must not hold
    # them until the cache is full: its memory would grow by a token each.
    now = [time.time()]
    check = TokenVerifier(
        tokens.key_cache(), issuer=tokens.ISSUER, audience=tokens.AUDIENCE, cache_ttl_s=30, clock=lambda: now[0]
    )
    issuer = tokens.issuer()
    for n in range(50):
        await check.verify(issuer.issue(f"visitor-{n}", [Role.CUSTOMER]))
    assert check.remembered == 50
    now[0] += 31
    await check.verify(issuer.issue("one-more", [Role.CUSTOMER]))
    assert check.remembered == 1
