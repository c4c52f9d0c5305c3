"""facemodel's routes. Over the Unix socket (access, same pod) callers are trusted by the
socket's file permissions; over TCP every call needs a token (model changes: operators).

An embedding is biometric data that identifies its owner: it goes only to callers that
store or match vectors (auth's enrolment with its service credential, operators, and
access over the socket). Everybody else — a kiosk, a member's app checking a selfie —
gets the quality verdict and, for identification, the match, never the vector."""

from __future__ import annotations

import binascii
from pathlib import Path
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from common.api import from_app_state, get_kernel
from common.security import InvalidToken, Principal, Role
from facemodel.engine import Analysis, ImageRejected
from facemodel.packs import PackError
from facemodel.quality import Purpose
from facemodel.schemas import (
    AnalysisOut,
    BurstIn,
    DeployIn,
    IdentificationOut,
    LivenessOut,
    MatchesOut,
    MatchOut,
    ModelStatus,
    ProbeIn,
    QualityOut,
    QualityVerdictOut,
    SubjectsOut,
    SwapOut,
    VectorIn,
    VectorsIn,
    VerificationOut,
)
from facemodel.service import FaceService, UnknownGallery

EMBEDDING_ROLES = (Role.SERVICE, Role.OPERATOR)
Faces = Annotated[FaceService, Depends(from_app_state("faces", FaceService))]
IMAGE_TYPES = {"image/jpeg", "image/png"}
_bearer = HTTPBearer(auto_error=False)

router = APIRouter(prefix="/v1")


def caller(*roles: Role):  # type: ignore[no-untyped-def]
    """Trusted over the socket; over TCP a valid token (with one of ``roles`` if given)."""

    async def dependency(
        request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
    ) -> Principal | None:
        if request.app.state.trusted_transport:
            return None
        if credentials is None:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "bearer token required")
        kernel = await get_kernel(request)
        try:
            principal = await kernel.verifier.verify(credentials.credentials)
        except InvalidToken as exc:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, exc.reason) from exc
        if roles and not principal.has_any_role(roles):
            raise HTTPException(status.HTTP_403_FORBIDDEN, "role not permitted")
        return principal

    return dependency


async def image_body(request: Request) -> bytes:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in IMAGE_TYPES:
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, "send the image as image/jpeg or image/png")
    return await request.body()


Image = Annotated[bytes, Depends(image_body)]


def may_see_embeddings(principal: Principal | None) -> bool:
    return principal is None or principal.has_any_role(EMBEDDING_ROLES)  # None: over the socket


def _analysis(analysis: Analysis, *, with_embedding: bool) -> AnalysisOut:
    detection = analysis.detection
    return AnalysisOut(
        model=analysis.model,
        faces_seen=analysis.faces_seen,
        box=[round(value, 1) for value in detection.box] if detection else None,
        score=round(detection.score, 4) if detection else None,
        quality=QualityOut(ok=analysis.quality.ok, reason=analysis.quality.reason, code=analysis.quality.code),
        embedding=analysis.embedding.tolist() if with_embedding and analysis.embedding is not None else None,
        timings_ms=analysis.timings_ms,
    )


@router.post("/analyse", dependencies=[Depends(caller(*EMBEDDING_ROLES))])
async def analyse(image: Image, faces: Faces, purpose: Purpose = "entry") -> AnalysisOut:
    """The full analysis with the embedding: enrolment and access only. ``purpose=enrolment``
    for an uploaded photo (judged and worded as one), ``entry`` for a camera frame."""
    try:
        return _analysis(await faces.analyse(image, purpose=purpose), with_embedding=True)
    except ImageRejected as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, exc.reason) from exc


@router.post("/quality", dependencies=[Depends(caller())])
async def quality(image: Image, faces: Faces) -> QualityVerdictOut:
    """Whether a photo would enrol (any signed-in caller): the verdict, not the vector."""
    try:
        analysis = await faces.analyse(image, purpose="enrolment", keep_reference=False)
    except ImageRejected as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, exc.reason) from exc
    out = _analysis(analysis, with_embedding=False)
    return QualityVerdictOut(model=out.model, faces_seen=out.faces_seen, box=out.box, quality=out.quality)


Caller = Annotated[Principal | None, Depends(caller(Role.DEVICE, Role.OPERATOR))]


@router.post("/galleries/{gallery}/identify")
async def identify(
    gallery: str, image: Image, faces: Faces, principal: Caller, k: Annotated[int, Query(ge=1, le=20)] = 1
) -> IdentificationOut:
    try:
        result = await faces.identify(image, gallery=gallery, k=k)
    except ImageRejected as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, exc.reason) from exc
    except UnknownGallery as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no gallery {exc}") from exc
    best = result.best
    return IdentificationOut(
        analysis=_analysis(result.analysis, with_embedding=may_see_embeddings(principal)),
        matches=[MatchOut(subject=match.subject, similarity=match.similarity) for match in result.matches],
        threshold=result.threshold,
        match=MatchOut(subject=best.subject, similarity=best.similarity) if best else None,
    )


async def _identified_live(
    faces: FaceService, body: BurstIn, *, gallery: str | None, principal: Principal | None
) -> IdentificationOut:
    try:
        result, verdict = await faces.identify_live(body.decoded(), gallery=gallery)
    except (ValueError, binascii.Error) as exc:
        reason = exc.reason if isinstance(exc, ImageRejected) else "frames must be base64 JPEG or PNG images"
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, reason) from exc
    except UnknownGallery as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no gallery {exc}") from exc
    best = result.best
    return IdentificationOut(
        analysis=_analysis(result.analysis, with_embedding=may_see_embeddings(principal) and verdict.ok),
        matches=[MatchOut(subject=match.subject, similarity=match.similarity) for match in result.matches],
        threshold=result.threshold,
        match=MatchOut(subject=best.subject, similarity=best.similarity) if best else None,
        liveness=LivenessOut(ok=verdict.ok, code=verdict.code, yaw_change=verdict.yaw_change),
    )


@router.post("/galleries/{gallery}/identify-live")
async def identify_live(gallery: str, body: BurstIn, faces: Faces, principal: Caller) -> IdentificationOut:
    """Active liveness on a burst of 2-4 frames, then identification of the first."""
    return await _identified_live(faces, body, gallery=gallery, principal=principal)


@router.post("/analyse-live")
async def analyse_live(
    body: BurstIn, faces: Faces, principal: Annotated[Principal | None, Depends(caller(*EMBEDDING_ROLES))]
) -> IdentificationOut:
    """Liveness and the first frame's analysis, without a gallery (access's cold path)."""
    return await _identified_live(faces, body, gallery=None, principal=principal)


@router.post("/galleries/{gallery}/search", dependencies=[Depends(caller(Role.OPERATOR))])
async def search(gallery: str, body: ProbeIn, faces: Faces) -> MatchesOut:
    """Who in ``gallery`` a face vector matches (access's miss path, over the socket: it
    already holds the probe's vector from the frame's analysis). A vector in, so only the
    socket and operators, like the calls that put vectors in."""
    try:
        matches, threshold = await faces.search(
            np.asarray(body.embedding, np.float32), gallery=gallery, space=body.embedding_space, k=body.k
        )
    except UnknownGallery as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no gallery {exc}") from exc
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
    best = matches[0] if matches and matches[0].similarity >= threshold else None
    return MatchesOut(
        matches=[MatchOut(subject=match.subject, similarity=match.similarity) for match in matches],
        threshold=threshold,
        match=MatchOut(subject=best.subject, similarity=best.similarity) if best else None,
    )


@router.post("/galleries/{gallery}/subjects/{subject}/verify")
async def verify(gallery: str, subject: str, image: Image, faces: Faces, principal: Caller) -> VerificationOut:
    try:
        analysis, similarity, threshold = await faces.verify(image, gallery=gallery, subject=subject)
    except ImageRejected as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, exc.reason) from exc
    except UnknownGallery as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no enrolled subject {exc}") from exc
    return VerificationOut(
        analysis=_analysis(analysis, with_embedding=may_see_embeddings(principal)),
        similarity=similarity,
        threshold=threshold,
        same_person=similarity is not None and similarity >= threshold,
    )


@router.put(
    "/galleries/{gallery}/subjects/{subject}",
    status_code=status.HTTP_204_NO_CONTENT,
    dependencies=[Depends(caller(Role.OPERATOR))],
)
async def put_vector(gallery: str, subject: str, body: VectorIn, faces: Faces) -> None:
    active = faces.holder.current.manifest
    if body.embedding_space != active.embedding_space:
        raise HTTPException(status.HTTP_409_CONFLICT, f"this gallery holds {active.embedding_space} vectors")
    try:
        faces.put_vector(gallery, subject, np.asarray(body.embedding, np.float32))
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc


@router.post(
    "/galleries/{gallery}/subjects",
    status_code=status.HTTP_204_NO_CONTENT,
    dependencies=[Depends(caller(Role.OPERATOR))],
)
async def put_vectors(gallery: str, body: VectorsIn, faces: Faces) -> None:
    """Upsert many subjects in one call (a gallery loaded at start-up)."""
    active = faces.holder.current.manifest
    if body.embedding_space != active.embedding_space:
        raise HTTPException(status.HTTP_409_CONFLICT, f"this gallery holds {active.embedding_space} vectors")
    vectors = {item.subject: np.asarray(item.embedding, np.float32) for item in body.subjects}
    try:
        faces.put_vectors(gallery, vectors)
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc


@router.get("/galleries/{gallery}/subjects", dependencies=[Depends(caller(Role.OPERATOR))])
async def list_subjects(gallery: str, faces: Faces) -> SubjectsOut:
    """Who a gallery holds (ids only): access reconciles it against its own store."""
    target = faces.galleries.get(gallery)
    if target is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no gallery {gallery}")
    return SubjectsOut(subjects=target.subjects())


@router.delete(
    "/galleries/{gallery}/subjects/{subject}",
    status_code=status.HTTP_204_NO_CONTENT,
    dependencies=[Depends(caller(Role.OPERATOR))],
)
async def remove_vector(gallery: str, subject: str, faces: Faces) -> None:
    faces.remove_vector(gallery, subject)


@router.get("/models", dependencies=[Depends(caller())])
async def model_status(faces: Faces) -> ModelStatus:
    active, previous = faces.holder.current, faces.holder.previous
    return ModelStatus(
        active=active.label,
        previous=previous.label if previous else None,
        active_version=faces.holder.active_version,
        previous_version=faces.holder.previous_version,
        embedding_space=active.manifest.embedding_space,
        threshold=active.manifest.threshold,
        swap_count=faces.holder.swap_count,
        galleries={name: len(gallery) for name, gallery in faces.galleries.items()},
    )


@router.post("/models/deploy", dependencies=[Depends(caller(Role.OPERATOR))])
async def deploy(body: DeployIn, faces: Faces, request: Request) -> SwapOut:
    try:
        report = await faces.deploy(Path(body.pack), threads=request.app.state.onnx_threads)
    except PackError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"pack refused: {exc.reason}") from exc
    return SwapOut(**report.__dict__)


@router.post("/models/rollback", dependencies=[Depends(caller(Role.OPERATOR))])
async def rollback(faces: Faces) -> SwapOut:
    try:
        report = await faces.rollback()
    except PackError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, exc.reason) from exc
    return SwapOut(**report.__dict__)
