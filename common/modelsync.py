"""The instance side of model deployment, for every service that serves a model family.

An instance follows ``ModelDeployed`` on a queue of its own (every instance must hear
every deployment, unlike a service's competing consumers), decides by its canary bucket
whether the deployment is for it, fetches the pack from the object store checking each
file's size and sha256, hands it to the service to load, self-test and swap, and reports
``ModelSwapReported``. Events missed while the broker was out of reach are caught up by
asking the registry which version is deployed, at start and after every reconnection.

What is family-specific (how a pack loads, what its self-test is, how a swap is made
atomic) stays in the service behind :class:`ModelServer`; this module knows no service.
See docs/adr/0034-model-deploys-on-the-instances.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
import shutil
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Protocol

import httpx
from pydantic import Field, SecretStr, ValidationError

from common.events.bus import EventBus
from common.events.envelope import Event, OutgoingMessage, utc_now
from common.objectstore import ObjectNotFound, ObjectStore, S3Location, object_store
from common.settings import PlatformSettings
from contracts.models import MODEL_VERSION_PATTERN, ModelDeployed, ModelSignalReported, ModelSwapReported, PackFile

log = logging.getLogger(__name__)

# Pack files in the object store: models/<family>/<version>/<file>.
PACK_KEY_PATTERN = re.compile(
    r"^models/[a-z][a-z0-9_]{0,39}/[A-Za-z0-9][A-Za-z0-9._+-]{0,79}/[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
)
_VERSION = re.compile(MODEL_VERSION_PATTERN)

Publish = Callable[[Event], Awaitable[None]]


class ModelInstanceSettings(PlatformSettings):
    """What a process serving a model family needs to follow deployments."""

    model_registry_url: str | None = Field(
        default=None,
        description=(
            "Base URL of the model registry (mlops), asked at start and after a broker reconnection which "
            "version is deployed (GET /v1/models/{family}/deployed); unset: follow the bus only."
        ),
    )
    model_instance_id: str | None = Field(
        default=None,
        max_length=80,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@-]*$",
        description=(
            "This instance's name in swap reports and in the canary bucket (a hash of it and the deployment); "
            "unset: the host name (the pod name under Kubernetes)."
        ),
    )
    model_store: Literal["directory", "s3"] = Field(
        default="directory", description="Where model packs are fetched from: a directory (embedded mode) or S3."
    )
    model_store_dir: Path | None = Field(
        default=None,
        description="The model-pack directory (the registry's); unset: `model-packs` under the data directory.",
    )
    model_s3_endpoint: str | None = Field(
        default=None, description="S3 endpoint URL of the model packs for S3-compatible stores; unset: AWS itself."
    )
    model_s3_bucket: str = Field(
        default="smartgym-model-packs", min_length=3, max_length=63, description="Bucket of the model packs."
    )
    model_s3_region: str = Field(default="ap-northeast-2", description="Region of the model-pack bucket.")
    model_s3_access_key_id: SecretStr | None = Field(
        default=None, description="S3 access key id for model packs; unset: the pod's role or the default chain."
    )
    model_s3_secret_access_key: SecretStr | None = Field(
        default=None, description="S3 secret access key for model packs."
    )
    model_local_dir: Path | None = Field(
        default=None,
        description="Where fetched packs are unpacked on this instance; unset: `models/deployed` in the data dir.",
    )
    model_signal_window_s: float = Field(
        default=60.0, gt=0, le=3600, description="Seconds per live-signal window reported for canary judgement."
    )

    def pack_store(self) -> ObjectStore:
        location = S3Location.from_settings(
            bucket=self.model_s3_bucket,
            region=self.model_s3_region,
            endpoint=self.model_s3_endpoint,
            access_key_id=self.model_s3_access_key_id,
            secret_access_key=self.model_s3_secret_access_key,
        )
        # The registry's default place in one box (mlops writes it, instances read it).
        directory = self.model_store_dir or self.data_dir / "model-packs"
        return object_store(self.model_store, directory=directory, s3=location, key_pattern=PACK_KEY_PATTERN)

    def local_pack_dir(self) -> Path:
        return self.model_local_dir or self.data_dir / "models" / "deployed"

    def instance_id(self, service: str) -> str:
        return f"{service}@{self.model_instance_id or socket.gethostname()}"


# -- canary ----------------------------------------------------------------------------


def canary_bucket(instance_id: str, deployment_id: uuid.UUID) -> float:
    """A stable number in [0, 1) for this instance and deployment: the same instance gets
    the same answer on every redelivery and restart, and another deployment reshuffles."""
    digest = hashlib.sha256(f"{instance_id}\x00{deployment_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def selected(event: ModelDeployed, instance_id: str) -> bool:
    return event.canary_share >= 1.0 or canary_bucket(instance_id, event.deployment_id) < event.canary_share


# -- fetching ----------------------------------------------------------------------------


class PackRefused(Exception):
    """The pack cannot serve here; ``reason`` goes into the swap report."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _complete(destination: Path, files: Sequence[PackFile]) -> bool:
    def matches(path: Path, file: PackFile) -> bool:
        if not path.is_file() or path.stat().st_size != file.size_bytes:
            return False
        return hashlib.sha256(path.read_bytes()).hexdigest() == file.sha256

    return destination.is_dir() and all(matches(destination / file.name, file) for file in files)


def _write_pack(destination: Path, contents: dict[str, bytes]) -> None:
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = destination.parent / f".{destination.name}.{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        for name, data in contents.items():
            (staging / name).write_bytes(data)
        if destination.exists():
            shutil.rmtree(destination)  # an incomplete or tampered copy
        os.replace(staging, destination)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


async def fetch_pack(*, store: ObjectStore, files: Sequence[PackFile], destination: Path) -> Path:
    """Download ``files`` into ``destination``, each checked for size and sha256 before the
    directory appears: it is written under a staging name and renamed in one step, so a
    reader (or a crash) never sees half a pack. An existing complete copy is reused."""
    if await asyncio.to_thread(_complete, destination, files):
        return destination
    contents: dict[str, bytes] = {}
    for file in files:
        try:
            data = await store.get(file.key)
        except ObjectNotFound as exc:
            raise PackRefused(f"{file.name}: not in the model store ({file.key})") from exc
        if len(data) != file.size_bytes:
            raise PackRefused(f"{file.name}: {len(data)} bytes, the deployment says {file.size_bytes}")
        if hashlib.sha256(data).hexdigest() != file.sha256:
            raise PackRefused(f"{file.name}: sha256 does not match the deployment")
        contents[file.name] = data
    await asyncio.to_thread(_write_pack, destination, contents)
    return destination


# -- the service's side --------------------------------------------------------------


@dataclass(frozen=True)
class Swapped:
    version: str
    load_ms: float = 0.0
    swap_ms: float = 0.0


class ModelServer(Protocol):
    """What a service serving one family lets the follower do."""

    family: str

    def active_version(self) -> str | None: ...

    def previous_version(self) -> str | None: ...

    async def install(self, *, pack: Path, event: ModelDeployed) -> Swapped:
        """Load, self-test and swap in ``pack`` (raise :class:`PackRefused` to keep the old one)."""

    async def restore_previous(self) -> Swapped:
        """Swap back to the kept previous model, without loading anything."""


# What the registry says is deployed for a family: the canary (if one runs) first, then
# the stable deployment; empty when nothing is deployed.
DeployedSource = Callable[[], Awaitable[Sequence[ModelDeployed]]]


def registry_source(url: str, family: str, *, timeout_s: float) -> DeployedSource:
    """Ask the registry (``GET {url}/v1/models/{family}/deployed``) what this family serves."""
    endpoint = f"{url.rstrip('/')}/v1/models/{family}/deployed"

    async def fetch() -> Sequence[ModelDeployed]:
        async with httpx.AsyncClient(timeout=timeout_s) as client:
            response = await client.get(endpoint)
        if response.status_code == 404:
            return ()
        response.raise_for_status()
        return deployed_from(response.json(), family=family)

    return fetch


def deployed_from(body: Any, *, family: str) -> tuple[ModelDeployed, ...]:
    """The registry's answer — ``{"stable": pack, "canary": pack}`` (each with deployment
    id, version, files, canary share) — as the deployments it stands for, canary first.
    The stable one is for every instance, whatever share it was first deployed with."""
    if not isinstance(body, dict):
        raise ValueError("the registry answered with something other than a JSON object")
    found = []
    for role in ("canary", "stable"):
        served = body.get(role)
        if isinstance(served, dict):
            event = _deployment_of(served, family=family)
            found.append(event if role == "canary" else event.model_copy(update={"canary_share": 1.0}))
    return tuple(found)


def _deployment_of(served: dict[str, Any], *, family: str) -> ModelDeployed:
    fields = {
        "deployment_id": served.get("deployment_id"),
        "family": family,
        "version": served.get("version"),
        "action": served.get("action") if served.get("action") in ("deploy", "promote", "rollback") else "deploy",
        "canary_share": served.get("canary_share", 1.0),
        "files": served.get("files"),
        "previous_version": served.get("previous_version"),
        "embedding_space": served.get("embedding_space"),
        "reenrolment_approved": bool(served.get("reenrolment_approved", False)),
        "deployed_at": served.get("deployed_at") or utc_now(),
    }
    try:
        return ModelDeployed.model_validate(fields)
    except ValidationError as exc:
        raise ValueError(f"the registry's deployment is not usable: {exc.errors()[:1]}") from exc


def bus_publisher(bus: EventBus, *, attempts: int = 5) -> Publish:
    """Publish straight to the bus, confirmed, retried a few times (for a service without
    a database and so without an outbox: a report lost after that is re-sent by the next
    deployment or reconciliation, and the registry can ask the instance's model route)."""

    async def publish(event: Event) -> None:
        delay = 0.2
        for attempt in range(1, attempts + 1):
            try:
                await bus.publish_many([OutgoingMessage.of(event)])
                return
            except Exception:
                if attempt == attempts:
                    log.error("could not publish %s after %d attempts", event.event_name, attempts, exc_info=True)
                    return
                await asyncio.sleep(delay)
                delay *= 2

    return publish


# -- the follower ----------------------------------------------------------------------


class ModelFollower:
    """Applies deployments of one family to one :class:`ModelServer`, one at a time."""

    def __init__(
        self,
        *,
        server: ModelServer,
        instance_id: str,
        store: ObjectStore,
        local_dir: Path,
        publish: Publish,
        deployed: DeployedSource | None = None,
    ) -> None:
        self.server = server
        self.instance_id = instance_id
        self._store = store
        self._local_dir = local_dir
        self._publish = publish
        self._deployed = deployed
        self._lock = asyncio.Lock()  # one deployment at a time, in arrival order
        self._handled: dict[uuid.UUID, ModelSwapReported] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.reports: list[ModelSwapReported] = []  # this process's history, newest last

    async def follow(self, bus: EventBus) -> None:
        await bus.broadcast([ModelDeployed], self.on_event, on_connected=self._reconcile_soon)

    async def _reconcile_soon(self) -> None:
        # In the background: a start-up never waits on the registry (it may be starting
        # too), and deployments heard meanwhile queue behind the same lock.
        task = asyncio.create_task(self._reconcile_logged(), name=f"reconcile:{self.server.family}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _reconcile_logged(self) -> None:
        try:
            await self.reconcile()
        except Exception:
            log.exception("reconciling %s with the registry failed", self.server.family)

    async def on_event(self, event: Event) -> None:
        # Delivery must not wait for a download and a model load: the work is queued.
        if isinstance(event, ModelDeployed) and event.family == self.server.family:
            task = asyncio.create_task(self._apply_logged(event), name=f"deploy:{event.version}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def reconcile(self) -> None:
        """Serve what the registry says is deployed, if this instance is in its share."""
        if self._deployed is None:
            return
        try:
            deployments = await self._deployed()
        except Exception as exc:
            log.warning("model registry not reachable to reconcile %s: %s", self.server.family, exc)
            return
        mine = next((item for item in deployments if selected(item, self.instance_id)), None)
        if mine is not None and mine.version != self.server.active_version():
            await self.apply(mine)

    async def _apply_logged(self, event: ModelDeployed) -> None:
        try:
            await self.apply(event)
        except Exception:
            log.exception("deployment %s of %s failed unexpectedly", event.deployment_id, event.version)

    async def apply(self, event: ModelDeployed) -> ModelSwapReported:
        async with self._lock:
            done = self._handled.get(event.deployment_id)
            if done is not None:
                return done  # a redelivery, or the same deployment seen by reconciliation
            report = await self._outcome(event)
            self._handled[event.deployment_id] = report
            self.reports.append(report)
        await self._publish(report)
        return report

    async def _outcome(self, event: ModelDeployed) -> ModelSwapReported:
        server = self.server
        if not selected(event, self.instance_id):
            return self._report(event, "not_selected")
        if event.version == server.active_version():
            return self._report(event, "serving")
        try:
            if event.version == server.previous_version():
                # A rollback (or a return to the version just left): kept loaded, no download.
                swapped = await server.restore_previous()
            else:
                pack = await fetch_pack(
                    store=self._store, files=event.files, destination=self._local_dir / event.family / event.version
                )
                swapped = await server.install(pack=pack, event=event)
        except PackRefused as exc:
            log.warning("refused %s %s: %s", event.family, event.version, exc.reason)
            return self._report(event, "refused", reason=exc.reason)
        except Exception as exc:  # an unreadable store, a disk error: still answer
            log.exception("deployment of %s %s failed", event.family, event.version)
            return self._report(event, "refused", reason=f"{type(exc).__name__}: {exc}")
        log.info("now serving %s %s", event.family, swapped.version, extra={"swap_ms": swapped.swap_ms})
        return self._report(event, "serving", load_ms=swapped.load_ms, swap_ms=swapped.swap_ms)

    def _report(
        self,
        event: ModelDeployed,
        outcome: Literal["serving", "refused", "not_selected"],
        *,
        reason: str = "",
        load_ms: float = 0.0,
        swap_ms: float = 0.0,
    ) -> ModelSwapReported:
        active = self.server.active_version()
        return ModelSwapReported(
            deployment_id=event.deployment_id,
            family=event.family,
            version=event.version,
            instance_id=self.instance_id,
            outcome=outcome,
            reason=reason[:300],
            active_version=active if active is not None and _VERSION.match(active) else None,
            load_ms=round(load_ms, 3),
            swap_ms=round(swap_ms, 6),
            reported_at=utc_now(),
        )

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task


# -- live signal --------------------------------------------------------------------------


class SignalWindow:
    """Counts samples and bad outcomes per model version, and reports them every window
    as ``ModelSignalReported`` (nothing for a version without samples)."""

    def __init__(self, *, family: str, instance_id: str, window_s: float, publish: Publish) -> None:
        self.family = family
        self.instance_id = instance_id
        self._window_s = window_s
        self._publish = publish
        self._counts: dict[str, list[int]] = {}
        self._started_at = utc_now()
        self._task: asyncio.Task[None] | None = None

    def record(self, version: str | None, *, bad: bool) -> None:
        if not version or not _VERSION.match(version):
            return  # no model served this outcome: nothing to judge
        counts = self._counts.setdefault(version, [0, 0])
        counts[0] += 1
        counts[1] += int(bad)

    async def flush(self) -> list[ModelSignalReported]:
        counts, self._counts = self._counts, {}
        started, ended = self._started_at, utc_now()
        self._started_at = ended
        reports = [self._event(version, samples, bad, started, ended) for version, (samples, bad) in counts.items()]
        for report in reports:
            await self._publish(report)
        return reports

    def _event(self, version: str, samples: int, bad: int, started: datetime, ended: datetime) -> ModelSignalReported:
        return ModelSignalReported(
            family=self.family,
            version=version,
            instance_id=self.instance_id,
            window_started_at=started,
            window_ended_at=ended,
            samples=samples,
            bad=bad,
        )

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"model-signal:{self.family}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(Exception):
            await self.flush()  # the last partial window is not thrown away

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._window_s)
            try:
                await self.flush()
            except Exception:
                log.warning("model signal not reported; counting on", exc_info=True)


def elapsed_ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000
