"""facemodel's side of model deployment: a fetched pack is loaded, self-tested, checked
against the enrolled vectors' embedding space and swapped in by ``ModelHolder``; the
follower in ``common.modelsync`` does the rest (canary share, download, reports).

facemodel has no database: it hears ``ModelDeployed`` on its own bus connection and
publishes its reports straight to the bus (docs/adr/0034-model-deploys-on-the-instances.md).
"""

from __future__ import annotations

from pathlib import Path

from common.modelsync import PackRefused, Swapped
from contracts.models import ModelDeployed
from facemodel.packs import PackError
from facemodel.service import FaceService

FAMILY = "face"


class FaceModelServer:
    family = FAMILY

    def __init__(self, faces: FaceService, *, threads: int) -> None:
        self._faces = faces
        self._threads = threads

    def active_version(self) -> str | None:
        return self._faces.holder.active_version

    def previous_version(self) -> str | None:
        return self._faces.holder.previous_version

    async def install(self, *, pack: Path, event: ModelDeployed) -> Swapped:
        holder = self._faces.holder
        current_space = holder.current.manifest.embedding_space
        other_space = event.embedding_space is not None and event.embedding_space != current_space
        if other_space and not event.reenrolment_approved:
            # Refused before loading anything: the registry says so itself.
            raise PackRefused(
                f"embeds into {event.embedding_space!r}, the enrolled vectors are {current_space!r}: "
                "needs an approved re-enrolment"
            )
        try:
            report = await self._faces.deploy(
                pack, threads=self._threads, version=event.version, new_space_approved=event.reenrolment_approved
            )
        except PackError as exc:
            raise PackRefused(exc.reason) from exc
        return Swapped(event.version, load_ms=report.load_ms, swap_ms=report.swap_ms)

    async def restore_previous(self) -> Swapped:
        try:
            # Going back to the previous engine is going back to the vectors it was
            # serving: a rollback is always allowed to cross the space it came over.
            report = await self._faces.rollback(new_space_approved=True)
        except PackError as exc:
            raise PackRefused(exc.reason) from exc
        return Swapped(self._faces.holder.active_version, load_ms=0.0, swap_ms=report.swap_ms)
