"""auth's app factory."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any

from argon2 import PasswordHasher
from fastapi import FastAPI

from auth import revocations
from auth.api import router, weak_password
from auth.devices import DeviceService
from auth.entry_passes import EntryPasses
from auth.errors import WeakPassword
from auth.faces import FACE_SEALING_PURPOSE, FaceAnalyser, FaceEnrolments, FacemodelClient, service_credential
from auth.housekeeping import forget_sent_reset_codes
from auth.identity import CardCheckClient, IdentityCheck
from auth.keys import KeyRing
from auth.memberships import MembershipService
from auth.models import Base
from auth.passwords import default_hasher
from auth.service import AccountService, AuthPolicy
from auth.settings import AuthSettings
from common.api import create_service_app
from common.breaker import breaker_for
from common.crypto import VectorSealer
from common.events.bus import EventBus
from common.events.revocations import TokensRevoked
from common.kernel import build_kernel
from common.observability import Metrics
from common.periodic import Periodic
from common.security import JwksCache
from common.settings import PlatformSettings
from contracts import CATALOG, FACE_TRANSIT_PURPOSE

SERVICE = "auth"

StopHooks = list[Callable[[], Awaitable[None]]]


def create_app(
    settings: PlatformSettings,
    *,
    bus: EventBus | None = None,
    metrics: Metrics | None = None,
    hasher: PasswordHasher | None = None,
    policy: AuthPolicy | None = None,
    identity_check: IdentityCheck | None = None,
    face_analyser: FaceAnalyser | None = None,
) -> FastAPI:
    # auth verifies its own tokens from its key ring, never over HTTP. The ring needs the
    # kernel's database and the kernel's verifier needs the ring: the fetch closure reads
    # the ring once both exist.
    async def own_jwks() -> Mapping[str, Any]:
        return keys.jwks()

    async def own_revocations() -> Sequence[TokensRevoked]:
        return await revocations.in_force(kernel.db)

    kernel = build_kernel(
        SERVICE,
        settings,
        metadata=Base.metadata,
        catalog=CATALOG,
        bus=bus,
        metrics=metrics,
        keys=JwksCache(own_jwks, min_refresh_interval_s=1.0),
        revocations=own_revocations,
    )
    auth_settings = AuthSettings.of(settings)
    keys = KeyRing(
        kernel.db,
        auth_settings.signing_key_secret.get_secret_value().encode(),
        legacy_passphrase=settings.key_encryption_secret.get_secret_value().encode(),
    )
    # Other auth replicas rotate keys too: re-read the ring every minute so this one signs
    # with the newest key and publishes every key still trusted.
    reloader = Periodic("auth-key-reloader", 60.0, keys.load)

    async def purge() -> None:
        await forget_sent_reset_codes(kernel)
        await revocations.purge_expired(kernel.db)
        await accounts.purge_stale_throttles()

    purger = Periodic("auth-housekeeping", 60.0, purge)
    stop_hooks: StopHooks = [reloader.stop, purger.stop]

    if identity_check is None:
        identity_check = _card_check(settings, auth_settings, kernel.metrics, stop_hooks)
    if face_analyser is None:
        face_analyser = _facemodel(settings, auth_settings, kernel.metrics, keys, stop_hooks)
    accounts = AccountService(
        kernel=kernel,
        keys=keys,
        hasher=hasher or default_hasher(),
        policy=policy or AuthPolicy(access_ttl=timedelta(seconds=settings.jwt_access_ttl_s)),
        hash_threads=auth_settings.auth_hash_threads,
    )
    stop_hooks.append(accounts.aclose)
    app = create_service_app(
        kernel,
        title="SmartGym auth",
        routers=[router],
        on_start=[keys.load, reloader.start, purger.start],
        on_stop=stop_hooks,
    )
    app.state.faces = FaceEnrolments(
        kernel=kernel,
        analyser=face_analyser,
        consent_version=auth_settings.face_consent_version,
        sealer=VectorSealer(auth_settings.sealing_keys(), purpose=FACE_SEALING_PURPOSE),
        transit=VectorSealer(auth_settings.sealing_keys(), purpose=FACE_TRANSIT_PURPOSE),
    )
    app.state.max_face_upload_bytes = auth_settings.max_face_upload_bytes
    app.add_exception_handler(WeakPassword, weak_password)
    app.state.keys = keys
    app.state.accounts = accounts
    app.state.devices = DeviceService(kernel=kernel, keys=keys)
    app.state.entry_passes = EntryPasses(keys, settings)
    app.state.memberships = MembershipService(kernel=kernel, identity=identity_check)
    return app


def _card_check(
    settings: PlatformSettings, auth_settings: AuthSettings, metrics: Metrics, stop_hooks: StopHooks
) -> IdentityCheck:
    """The card-verification partner's client, closed with the app."""
    partner = CardCheckClient(
        auth_settings.cardcheck_url,
        auth_settings.cardcheck_api_key.get_secret_value(),
        timeout_s=auth_settings.cardcheck_timeout_s,
        breaker=breaker_for("cardcheck", settings, metrics),
    )
    stop_hooks.append(partner.aclose)
    return partner


def _facemodel(
    settings: PlatformSettings, auth_settings: AuthSettings, metrics: Metrics, keys: KeyRing, stop_hooks: StopHooks
) -> FaceAnalyser:
    """facemodel's client, signing its calls with auth's own service credential; closed
    with the app."""
    facemodel = FacemodelClient(
        auth_settings.facemodel_url,
        breaker=breaker_for("facemodel", settings, metrics),
        credential=lambda: service_credential(keys, settings),
    )
    stop_hooks.append(facemodel.aclose)
    return facemodel
