"""facemodel over the pod-local Unix socket (trusted by the socket's permissions, so no
token: the gate must not depend on auth being reachable)."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

import httpx
import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ValidationError

from access.face_engine import FaceServiceUnavailable, GalleryMissing, Identification, ImageRejected
from common.breaker import AsyncCircuitBreaker, CircuitOpenError
from common.http import ServiceClient, error_detail

ModelT = TypeVar("ModelT", bound=BaseModel)


class _Quality(BaseModel):
    ok: bool
    code: str | None


class _Analysis(BaseModel):
    model: str
    quality: _Quality
    embedding: list[float] | None
    timings_ms: dict[str, float]


class _Match(BaseModel):
    subject: str
    similarity: float


class _Liveness(BaseModel):
    ok: bool
    code: str | None


class _Identification(BaseModel):
    analysis: _Analysis
    matches: list[_Match]
    threshold: float
    liveness: _Liveness | None = None


class _Matches(BaseModel):
    matches: list[_Match]
    threshold: float


class _Subjects(BaseModel):
    subjects: list[str]


class _Status(BaseModel):
    embedding_space: str
    threshold: float
    galleries: dict[str, int]


class UnixSocketFacemodel:
    def __init__(self, socket_path: Path, *, breaker: AsyncCircuitBreaker, timeout_s: float) -> None:
        self._client = ServiceClient(
            "facemodel",
            "http://facemodel",
            breaker=breaker,
            timeout_s=timeout_s,
            transport=httpx.AsyncHTTPTransport(uds=str(socket_path)),
        )
        self._threshold: float | None = None

    async def identify(self, gallery: str, image: bytes, content_type: str) -> Identification:
        response = await self._call(
            "POST", f"/v1/galleries/{gallery}/identify", content=image, headers={"content-type": content_type}
        )
        if response.status_code == 404:
            raise GalleryMissing(gallery)
        parsed = _parse(response, _Identification)
        best = parsed.matches[0] if parsed.matches else None
        return _identification(
            parsed.analysis, parsed.threshold, best.subject if best else None, best.similarity if best else None
        )

    async def identify_live(self, gallery: str | None, frames: Sequence[bytes]) -> Identification:
        """Liveness on a burst, then the first frame identified (``gallery`` None: only
        analysed, for the cold path)."""
        body = {"frames": [base64.b64encode(frame).decode() for frame in frames]}
        url = f"/v1/galleries/{gallery}/identify-live" if gallery is not None else "/v1/analyse-live"
        response = await self._call("POST", url, json=body)
        if response.status_code == 404 and gallery is not None:
            raise GalleryMissing(gallery)
        parsed = _parse(response, _Identification)
        best = parsed.matches[0] if parsed.matches else None
        found = _identification(
            parsed.analysis, parsed.threshold, best.subject if best else None, best.similarity if best else None
        )
        live = parsed.liveness
        return replace(found, liveness_ok=live.ok if live else False, liveness_code=live.code if live else None)

    async def analyse(self, image: bytes, content_type: str) -> Identification:
        response = await self._call("POST", "/v1/analyse", content=image, headers={"content-type": content_type})
        analysis = _parse(response, _Analysis)
        threshold = self._threshold if self._threshold is not None else (await self._status()).threshold
        return _identification(analysis, threshold, None, None)

    async def search(
        self, gallery: str, space: str, probe: NDArray[np.float32], *, k: int = 1
    ) -> list[tuple[str, float]]:
        body = {"embedding": probe.tolist(), "embedding_space": space, "k": k}
        response = await self._call("POST", f"/v1/galleries/{gallery}/search", json=body)
        if response.status_code == 404:
            raise GalleryMissing(gallery)
        return [(match.subject, match.similarity) for match in _parse(response, _Matches).matches]

    async def put_vectors(self, gallery: str, space: str, vectors: dict[str, NDArray[np.float32]]) -> None:
        def encoded() -> bytes:
            body = {
                "embedding_space": space,
                "subjects": [{"subject": subject, "embedding": vector.tolist()} for subject, vector in vectors.items()],
            }
            return json.dumps(body).encode()

        # A gallery loads in pages of thousands of vectors (megabytes of JSON): encoded on a
        # worker thread, so the door's requests keep the event loop meanwhile.
        content = encoded() if len(vectors) < 100 else await asyncio.to_thread(encoded)
        response = await self._call(
            "POST",
            f"/v1/galleries/{gallery}/subjects",
            content=content,
            headers={"content-type": "application/json"},
        )
        if response.status_code != 204:
            raise FaceServiceUnavailable(f"facemodel refused vectors: {response.status_code} {response.text[:200]}")

    async def remove(self, gallery: str, subject: str) -> None:
        response = await self._call("DELETE", f"/v1/galleries/{gallery}/subjects/{subject}")
        if response.status_code != 204:
            raise FaceServiceUnavailable(f"facemodel did not remove {subject}: {response.status_code}")

    async def subjects(self, gallery: str) -> set[str]:
        response = await self._call("GET", f"/v1/galleries/{gallery}/subjects")
        if response.status_code == 404:
            return set()
        return set(_parse(response, _Subjects).subjects)

    async def embedding_space(self) -> str:
        return (await self._status()).embedding_space

    async def gallery_sizes(self) -> dict[str, int]:
        return (await self._status()).galleries

    async def _status(self) -> _Status:
        status = _parse(await self._call("GET", "/v1/models"), _Status)
        self._threshold = status.threshold  # changes only with the model
        return status

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _call(self, method: str, url: str, **kwargs: object) -> httpx.Response:
        try:
            response = await self._client.request(method, url, **kwargs)
        except (httpx.HTTPError, CircuitOpenError) as exc:
            raise FaceServiceUnavailable(type(exc).__name__) from exc
        if response.status_code in (413, 415, 422):
            raise ImageRejected(error_detail(response))
        if response.status_code >= 500:
            raise FaceServiceUnavailable(f"facemodel answered {response.status_code}")
        return response


def _parse(response: httpx.Response, shape: type[ModelT]) -> ModelT:
    if response.status_code != 200:
        raise FaceServiceUnavailable(f"facemodel answered {response.status_code}")
    try:
        return shape.model_validate_json(response.content)
    except ValidationError as exc:
        raise FaceServiceUnavailable("facemodel answer malformed") from exc


def _identification(
    analysis: _Analysis, threshold: float, subject: str | None, similarity: float | None
) -> Identification:
    embedding = np.asarray(analysis.embedding, np.float32) if analysis.embedding is not None else None
    return Identification(
        model=analysis.model,
        quality_ok=analysis.quality.ok,
        quality_code=analysis.quality.code,
        embedding=embedding,
        best_subject=subject,
        best_similarity=similarity,
        threshold=threshold,
        timings_ms=analysis.timings_ms,
    )
