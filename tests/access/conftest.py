from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from access.app import create_app
from access.settings import AccessSettings
from common.crypto import VectorSealer
from common.events.envelope import OutgoingMessage
from common.migrations import upgrade
from common.security import Role, TokenIssuer
from contracts import FACE_TRANSIT_PURPOSE, FaceEnrolled, MembershipChanged
from facemodel.app import create_app as create_facemodel_app
from facemodel.engine import FaceEngine
from facemodel.holder import ModelHolder
from facemodel.service import FaceService
from facemodel.settings import FacemodelSettings
from tests.support import tokens
from tests.support.apps import asgi_client, serving
from tests.support.serialgate import GateSimulator, SocatPair

BRANCH = "gangnam"


@pytest.fixture(scope="module")
def face_service(pack):
    service = FaceService(ModelHolder(FaceEngine(pack)), workers=2)
    yield service
    service.close()


@pytest.fixture
async def facemodel_socket(face_service, tmp_path):
    face_service.galleries.clear()  # a fresh sidecar per test
    socket_path = tmp_path / "facemodel.sock"
    app = create_facemodel_app(FacemodelSettings(environment="test"), faces=face_service, trusted_transport=True)
    async with serving(app, uds=str(socket_path)):
        yield socket_path


@pytest.fixture
def relay(tmp_path):
    pair = SocatPair(tmp_path, "relay").start()
    device = GateSimulator(pair.theirs, "ch340").start()
    yield pair, device
    device.stop()
    pair.stop()


def entry_pass(member_id: uuid.UUID, branch: str = BRANCH, *, ttl_s: int = 60, now: datetime | None = None) -> str:
    issuer = TokenIssuer(
        tokens.signing_key(), issuer=tokens.ISSUER, audience="smartgym-entry", ttl=timedelta(seconds=ttl_s)
    )
    return issuer.issue(str(member_id), [Role.CUSTOMER], [branch], now=now)


def membership(member_id: uuid.UUID, *, version: int = 1, **overrides) -> MembershipChanged:
    now = datetime.now(UTC)
    fields = {
        "membership_id": uuid.uuid5(uuid.NAMESPACE_URL, f"membership/{member_id}/{overrides.get('branch_id', BRANCH)}"),
        "member_id": member_id,
        "branch_id": BRANCH,
        "status": "active",
        "valid_from": now - timedelta(days=1),
        "valid_until": now + timedelta(days=30),
        "identity_required": False,
        "identity_verified": False,
        "version": version,
    }
    fields.update(overrides)
    return MembershipChanged(**fields)


@dataclass
class Door:
    """One access site with a real facemodel sidecar and a relay board on a pty."""

    app: FastAPI
    client: httpx.AsyncClient
    device: GateSimulator
    settings: AccessSettings

    @property
    def bus(self):
        return self.app.state.kernel.bus

    @property
    def service(self):
        return self.app.state.access

    async def announce(self, *events) -> None:
        await self.bus.publish_many([OutgoingMessage.of(event) for event in events])

    async def enrol(self, face_service, photo_bytes, photo: str) -> uuid.UUID:
        member_id = uuid.uuid4()
        analysis = await face_service.analyse(photo_bytes[photo])
        await self.announce(membership(member_id), self.enrolment(member_id, analysis.embedding, model=analysis.model))
        return member_id

    def enrolment(self, member_id: uuid.UUID, vector: Any, *, model: str, version: int | None = None) -> FaceEnrolled:
        """FaceEnrolled as auth publishes it: the vector sealed for transit."""
        transit = VectorSealer(self.settings.sealing_keys(), purpose=FACE_TRANSIT_PURPOSE)
        return FaceEnrolled(
            member_id=member_id,
            sealed_embedding=base64.b64encode(transit.seal(member_id, vector)).decode(),
            key_id=transit.current,
            enrolment_version=version or int(datetime.now(UTC).timestamp() * 1_000_000),
            model=model,
            embedding_space="sface-2021dec",
        )

    def kiosk(self, branch: str = BRANCH) -> dict[str, str]:
        token = tokens.issuer().issue(f"device:{uuid.uuid4()}", [Role.DEVICE], [branch])
        return {"authorization": f"Bearer {token}"}

    async def face(self, photo: bytes, gate: str = "front-in", content_type: str = "image/jpeg") -> httpx.Response:
        return await self.client.post(
            f"/v1/gates/{gate}/face", content=photo, headers={**self.kiosk(), "content-type": content_type}
        )

    async def scan(self, code: str, gate: str = "front-in") -> httpx.Response:
        return await self.client.post(f"/v1/gates/{gate}/pass", json={"code": code}, headers=self.kiosk())


def site_settings(tmp_path, relay_port: str, socket_path, **overrides) -> AccessSettings:
    values = {
        "environment": "test",
        "data_dir": tmp_path,
        "access_facemodel_socket": socket_path,
        "access_serial_reconnect_s": 0.1,
        "access_gates": [
            {
                "gate_id": "front-in",
                "branch_id": BRANCH,
                "driver": "ch340",
                "port": relay_port,
                "channel": 1,
                "open_ms": 200,
            },
            {
                "gate_id": "front-out",
                "branch_id": BRANCH,
                "direction": "out",
                "driver": "ch340",
                "port": relay_port,
                "channel": 2,
                "open_ms": 200,
            },
        ],
    }
    values.update(overrides)
    return AccessSettings(**values)


@pytest.fixture
def make_door(tmp_path, relay, facemodel_socket):
    pair = relay[0]

    async def build(**overrides):
        settings = site_settings(tmp_path, pair.ours, facemodel_socket, **overrides)
        upgrade("access", settings.database_url("access"))
        return settings

    return build


@pytest.fixture
def open_door(
    make_door: Callable[..., Awaitable[AccessSettings]], relay: tuple[SocatPair, GateSimulator]
) -> Callable[..., AbstractAsyncContextManager[Door]]:
    """A site with its settings overridden; ``device`` is the far end of its gate line."""

    @asynccontextmanager
    async def opened(device: GateSimulator | None = None, **overrides: Any) -> AsyncIterator[Door]:
        settings = await make_door(**overrides)
        app = create_app(settings, keys=tokens.key_cache())
        async with asgi_client(app) as client:
            yield Door(app, client, device or relay[1], settings)

    return opened


@pytest.fixture
async def door(open_door):
    async with open_door() as opened:
        yield opened
