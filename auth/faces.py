"""Face enrolment with consent, and erasure. auth asks facemodel for the embedding, keeps
only the vector (sealed with AES-GCM), never the photo, and tells access through events
(the vector sealed again for transit: FaceEnrolled carries no plaintext biometrics)."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, Protocol

import httpx
from pydantic import BaseModel, ValidationError
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from auth.audit import audit
from auth.keys import KeyRing
from auth.models import FaceConsent, FaceEnrollment
from auth.settings import AuthSettings
from common.breaker import AsyncCircuitBreaker, CircuitOpenError
from common.crypto import VectorSealer
from common.db import Database
from common.events.envelope import utc_now
from common.events.outbox import UnitOfWork
from common.http import ServiceClient, error_detail
from common.kernel import ServiceKernel
from common.sealing import reseal_rows
from common.security import Role, TokenIssuer
from common.settings import PlatformSettings
from contracts import FaceEnrolled, FaceErased

SERVICE_CREDENTIAL_TTL = timedelta(seconds=60)
# Fixed forever: vectors sealed under it must still open after an upgrade.
FACE_SEALING_PURPOSE = b"smartgym-auth-face-v1"

ErasureReason = Literal["consent_withdrawn", "member_request", "account_deleted"]


class ConsentRequired(Exception):
    pass


class FaceNotUsable(Exception):
    """The photo was analysed but cannot be enrolled; ``reason`` is for the member."""

    def __init__(self, reason: str, code: str | None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


class FaceServiceUnavailable(Exception):
    pass


@dataclass(frozen=True)
class FaceVector:
    model: str
    embedding_space: str
    embedding: tuple[float, ...]


class FaceAnalyser(Protocol):
    async def embed(self, image: bytes, *, content_type: str) -> FaceVector: ...


class _Quality(BaseModel):
    ok: bool
    reason: str | None = None
    code: str | None = None


class _Analysis(BaseModel):
    model: str
    quality: _Quality
    embedding: list[float] | None


class FacemodelClient:
    """facemodel's TCP API with auth's own service credential: facemodel hands embeddings
    only to services and operators, never to a member's token (which could then extract
    anybody's face vector from any photo)."""

    def __init__(
        self,
        base_url: str,
        *,
        breaker: AsyncCircuitBreaker,
        credential: Callable[[], str],
        timeout_s: float = 10.0,
    ) -> None:
        self._client = ServiceClient("facemodel", base_url, breaker=breaker, timeout_s=timeout_s)
        self._credential = credential

    async def embed(self, image: bytes, *, content_type: str) -> FaceVector:
        bearer = self._credential()
        try:
            response = await self._client.request(
                "POST",
                "/v1/analyse",
                params={"purpose": "enrolment"},
                content=image,
                headers={"content-type": content_type, "authorization": f"Bearer {bearer}"},
            )
        except (httpx.HTTPError, CircuitOpenError) as exc:
            raise FaceServiceUnavailable(type(exc).__name__) from exc
        if response.status_code in (413, 415, 422):
            detail = error_detail(response)
            raise FaceNotUsable(detail, "bad_image")
        if response.status_code != 200:
            raise FaceServiceUnavailable(f"facemodel answered {response.status_code}")
        try:
            analysis = _Analysis.model_validate_json(response.content)
            status = (
                await self._client.request("GET", "/v1/models", headers={"authorization": f"Bearer {bearer}"})
            ).json()
            space = str(status["embedding_space"])
        except (ValidationError, ValueError, KeyError, httpx.HTTPError, CircuitOpenError) as exc:
            raise FaceServiceUnavailable("facemodel answer malformed") from exc
        if not analysis.quality.ok or analysis.embedding is None:
            raise FaceNotUsable(analysis.quality.reason or "no usable face", analysis.quality.code)
        return FaceVector(analysis.model, space, tuple(analysis.embedding))

    async def aclose(self) -> None:
        await self._client.aclose()


def service_credential(keys: KeyRing, settings: PlatformSettings) -> str:
    """A token auth gives itself for one call to facemodel (a minute; a fresh one each
    call, so nothing long-lived exists to leak)."""
    issuer = TokenIssuer(
        keys.active, issuer=settings.jwt_issuer, audience=settings.jwt_audience, ttl=SERVICE_CREDENTIAL_TTL
    )
    return issuer.issue("service:auth", [Role.SERVICE])


def enrolment_version(previous: int | None) -> int:
    """Microseconds since the epoch, and always past the member's previous enrolment: it
    orders enrolments even across an erasure, when the previous row is gone (clocks of
    auth replicas are NTP-kept; a skew only matters to an enrolment made within it)."""
    now = int(utc_now().timestamp() * 1_000_000)
    return max(now, (previous or 0) + 1)


@dataclass(frozen=True, slots=True)
class FaceStatus:
    consent_version: str
    consent_given_at: datetime | None
    enrolled_at: datetime | None


class FaceEnrolments:
    def __init__(
        self,
        *,
        kernel: ServiceKernel,
        analyser: FaceAnalyser,
        sealer: VectorSealer,
        transit: VectorSealer,
        consent_version: str,
    ) -> None:
        self._kernel = kernel
        self._analyser = analyser
        self._sealer = sealer
        self._transit = transit
        self.consent_version = consent_version

    def _announcement(
        self, member_id: uuid.UUID, embedding: object, *, model: str, space: str, version: int
    ) -> FaceEnrolled:
        sealed = self._transit.seal(member_id, embedding)  # type: ignore[arg-type]
        return FaceEnrolled(
            member_id=member_id,
            sealed_embedding=base64.b64encode(sealed).decode(),
            key_id=self._transit.current,
            enrolment_version=version,
            model=model,
            embedding_space=space,
        )

    async def give_consent(self, *, member_id: uuid.UUID, text_version: str, source: str | None) -> FaceConsent:
        if text_version != self.consent_version:
            raise ConsentRequired(f"consent text {self.consent_version} must be accepted")
        consent = FaceConsent(
            id=uuid.uuid4(), user_id=member_id, text_version=text_version, given_at=utc_now(), source_address=source
        )
        async with self._kernel.unit_of_work() as uow:
            uow.session.add(consent)
            audit(
                uow.session,
                "face_consent_given",
                actor=str(member_id),
                subject=str(member_id),
                source=source,
                text_version=text_version,
            )
        return consent

    async def enrol(self, *, member_id: uuid.UUID, image: bytes, content_type: str, source: str | None) -> FaceVector:
        async with self._kernel.db.sessions() as session:
            if await _active_consent(session, member_id, self.consent_version) is None:
                raise ConsentRequired(f"consent text {self.consent_version} must be accepted first")
        # The photo exists only in this request's memory: it is never written anywhere.
        vector = await self._analyser.embed(image, content_type=content_type)
        async with self._kernel.unit_of_work() as uow:
            if await _active_consent(uow.session, member_id, self.consent_version) is None:
                raise ConsentRequired("consent was withdrawn meanwhile")  # raced with a withdrawal
            existing = await uow.session.get(FaceEnrollment, member_id, with_for_update=True)
            sealed = self._sealer.seal(member_id, vector.embedding)
            version = enrolment_version(existing.version if existing is not None else None)
            if existing is None:
                uow.session.add(
                    FaceEnrollment(
                        user_id=member_id,
                        model=vector.model,
                        embedding_space=vector.embedding_space,
                        sealed_embedding=sealed,
                        enrolled_at=utc_now(),
                        version=version,
                    )
                )
            else:
                existing.model, existing.embedding_space = vector.model, vector.embedding_space
                existing.sealed_embedding, existing.enrolled_at = sealed, utc_now()
                existing.version = version
            audit(
                uow.session,
                "face_enrolled",
                actor=str(member_id),
                subject=str(member_id),
                source=source,
                model=vector.model,
                replaced=existing is not None,
            )
            uow.emit(
                self._announcement(
                    member_id, vector.embedding, model=vector.model, space=vector.embedding_space, version=version
                )
            )
        return vector

    async def republish(self, *, actor: str, source: str | None, batch: int = 500) -> int:
        """Announce every stored vector again (a new access site fills its copy)."""
        async with self._kernel.db.sessions() as session:
            enrolments = (await session.scalars(select(FaceEnrollment))).all()
        for start in range(0, len(enrolments), batch):
            async with self._kernel.unit_of_work() as uow:
                for enrolment in enrolments[start : start + batch]:
                    embedding = self._sealer.open(enrolment.user_id, enrolment.sealed_embedding)
                    uow.emit(
                        self._announcement(
                            enrolment.user_id,
                            embedding,
                            model=enrolment.model,
                            space=enrolment.embedding_space,
                            version=max(enrolment.version, 1),
                        )
                    )
        async with self._kernel.unit_of_work() as uow:
            audit(uow.session, "faces_republished", actor=actor, subject=None, source=source, count=len(enrolments))
        return len(enrolments)

    async def withdraw_consent(self, *, member_id: uuid.UUID, source: str | None) -> None:
        async with self._kernel.unit_of_work() as uow:
            await uow.session.execute(
                update(FaceConsent)
                .where(FaceConsent.user_id == member_id, FaceConsent.withdrawn_at.is_(None))
                .values(withdrawn_at=utc_now())
            )
            audit(uow.session, "face_consent_withdrawn", actor=str(member_id), subject=str(member_id), source=source)
            await erase_face(uow, member_id, "consent_withdrawn", actor=str(member_id), source=source)

    async def erase(self, *, member_id: uuid.UUID, source: str | None) -> bool:
        async with self._kernel.unit_of_work() as uow:
            return await erase_face(uow, member_id, "member_request", actor=str(member_id), source=source)

    async def status(self, *, member_id: uuid.UUID) -> FaceStatus:
        """What the member's own screen shows: the consent text version in force, whether
        they accepted it, and whether a face is enrolled (never the vector itself)."""
        async with self._kernel.db.sessions() as session:
            consent = await _active_consent(session, member_id, self.consent_version)
            enrolment = await session.get(FaceEnrollment, member_id)
        return FaceStatus(
            consent_version=self.consent_version,
            consent_given_at=consent.given_at if consent is not None else None,
            enrolled_at=enrolment.enrolled_at if enrolment is not None else None,
        )

    async def stored_vector(self, member_id: uuid.UUID) -> tuple[float, ...] | None:
        async with self._kernel.db.sessions() as session:
            enrolment = await session.get(FaceEnrollment, member_id)
        if enrolment is None:
            return None
        return tuple(float(value) for value in self._sealer.open(member_id, enrolment.sealed_embedding))


async def reseal_stored_faces(settings: AuthSettings) -> tuple[int, int]:
    """Key rotation: every stored vector re-sealed under the current biometric sealing
    key. Returns (re-sealed, total); safe to run again after an interruption."""
    database = Database(settings.database_url("auth"))
    try:
        sealer = VectorSealer(settings.sealing_keys(), purpose=FACE_SEALING_PURPOSE)
        return await reseal_rows(
            database, FaceEnrollment, FaceEnrollment.user_id, FaceEnrollment.sealed_embedding, sealer
        )
    finally:
        await database.engine.dispose()


async def erase_face(
    uow: UnitOfWork, member_id: uuid.UUID, reason: ErasureReason, *, actor: str | None, source: str | None
) -> bool:
    """Destroy the vector and announce it, in the caller's transaction. Returns whether
    there was one; erasing nothing publishes nothing."""
    enrolment = await uow.session.get(FaceEnrollment, member_id, with_for_update=True)
    if enrolment is None:
        return False
    erased_version = enrolment.version
    await uow.session.delete(enrolment)
    audit(uow.session, "face_erased", actor=actor, subject=str(member_id), source=source, reason=reason)
    uow.emit(FaceErased(member_id=member_id, reason=reason, enrolment_version=erased_version))
    return True


async def _active_consent(session: AsyncSession, member_id: uuid.UUID, version: str) -> FaceConsent | None:
    result = await session.scalars(
        select(FaceConsent)
        .where(
            FaceConsent.user_id == member_id, FaceConsent.text_version == version, FaceConsent.withdrawn_at.is_(None)
        )
        .limit(1)
    )
    return result.first()
