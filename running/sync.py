"""Sending runs to Strava for members who connected it: the OAuth2 code exchange, tokens
refreshed when they expire (Strava rotates the refresh token, so the new one is stored),
and an upload of the run as FIT, polled until Strava has processed it. Nothing here is on
the live path: it runs on the member's request, after the run is finished."""

from __future__ import annotations

import uuid
from typing import Any

from common.events.envelope import utc_now
from common.kernel import ServiceKernel
from running import fit
from running.errors import Conflict, NotFound
from running.models import Run, StravaLink, StravaUpload
from running.runs import stored_points
from running.sealing import TokenSealer
from running.strava import StravaClient, StravaError, StravaTokens


class StravaUnavailable(Exception):
    """Strava is not configured, or kept failing."""


class StravaSync:
    def __init__(
        self, *, kernel: ServiceKernel, client: StravaClient | None, sealer: TokenSealer, wait_s: float = 10.0
    ) -> None:
        self._kernel = kernel
        self._sealer = sealer
        self._client = client
        self._wait_s = wait_s

    def _strava(self) -> StravaClient:
        if self._client is None:
            raise StravaUnavailable("Strava is not configured")
        return self._client

    async def connect(self, *, user: uuid.UUID, code: str) -> dict[str, Any]:
        try:
            tokens = await self._strava().exchange_code(code)
        except StravaError as exc:
            raise Conflict(str(exc)) if exc.status == 400 else StravaUnavailable(str(exc)) from exc
        await self._store(user, tokens)
        return {"connected": True, "athlete_id": tokens.athlete_id}

    async def _store(self, user: uuid.UUID, tokens: StravaTokens) -> None:
        async with self._kernel.db.sessions() as session, session.begin():
            link = await session.get(StravaLink, user)
            if link is None:
                link = StravaLink(user_id=user)
                session.add(link)
            link.access_token = self._sealer.seal(user, tokens.access_token)
            link.refresh_token = self._sealer.seal(user, tokens.refresh_token)
            link.expires_at = tokens.expires_at
            if tokens.athlete_id is not None:
                link.athlete_id = tokens.athlete_id
            link.updated_at = utc_now()

    async def _tokens(self, user: uuid.UUID) -> StravaTokens:
        async with self._kernel.db.sessions() as session:
            link = await session.get(StravaLink, user)
        if link is None:
            raise Conflict("connect Strava first")
        tokens = StravaTokens(
            self._sealer.open(user, link.access_token),
            self._sealer.open(user, link.refresh_token),
            link.expires_at,
            link.athlete_id,
        )
        if tokens.expired():
            tokens = await self._strava().refresh(tokens.refresh_token)
            await self._store(user, tokens)
        return tokens

    async def upload_run(self, *, user: uuid.UUID, run_id: uuid.UUID) -> dict[str, Any]:
        """Send a finished run (once: asking again reports the same upload)."""
        async with self._kernel.db.sessions() as session:
            run = await session.get(Run, run_id)
            if run is None or run.user_id != user:
                raise NotFound("no such run of yours")
            if run.status != "finished":
                raise Conflict("finish the run first")
            known = await session.get(StravaUpload, run_id)
            points = await stored_points(session, run_id=run_id) if known is None else []
        if known is not None:
            return await self.status(user=user, run_id=run_id)
        if len(points) < 2:
            raise Conflict("the run has no track to send")
        try:
            tokens = await self._tokens(user)
            sent = await self._strava().upload(
                tokens, document=fit.export(points), data_type="fit", name=run.title, external_id=f"smartgym-{run_id}"
            )
            result = await self._strava().wait_processed(tokens, sent.upload_id, timeout_s=self._wait_s)
        except StravaError as exc:
            raise StravaUnavailable(str(exc)) from exc
        async with self._kernel.db.sessions() as session, session.begin():
            session.add(
                StravaUpload(
                    run_id=run_id,
                    user_id=user,
                    upload_id=result.upload_id,
                    status=result.status[:200],
                    activity_id=result.activity_id,
                    error=result.error[:300] if result.error else None,
                    updated_at=utc_now(),
                )
            )
        return _view(result.upload_id, result.status, result.activity_id, result.error)

    async def status(self, *, user: uuid.UUID, run_id: uuid.UUID) -> dict[str, Any]:
        """The upload's state, asking Strava again while it is still being processed."""
        async with self._kernel.db.sessions() as session:
            upload = await session.get(StravaUpload, run_id)
        if upload is None or upload.user_id != user:
            raise NotFound("this run was not sent to Strava")
        if upload.activity_id is None and upload.error is None:
            try:
                result = await self._strava().upload_status(await self._tokens(user), upload.upload_id)
            except StravaError as exc:
                raise StravaUnavailable(str(exc)) from exc
            async with self._kernel.db.sessions() as session, session.begin():
                stored = await session.get(StravaUpload, run_id)
                assert stored is not None
                stored.status, stored.activity_id, stored.updated_at = (
                    result.status[:200],
                    result.activity_id,
                    utc_now(),
                )
                stored.error = result.error[:300] if result.error else None
            return _view(result.upload_id, result.status, result.activity_id, result.error)
        return _view(upload.upload_id, upload.status, upload.activity_id, upload.error)


def _view(upload_id: int, status: str, activity_id: int | None, error: str | None) -> dict[str, Any]:
    return {"upload_id": upload_id, "status": status, "activity_id": activity_id, "error": error,
            "processed": activity_id is not None or error is not None}  # fmt: skip
