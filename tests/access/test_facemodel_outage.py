"""facemodel killed while members arrive: face entry answers 503 with Retry-After (the
kiosk falls back to QR), QR entry keeps working, and face entry comes back when the
sidecar does, without restarting access."""

from __future__ import annotations

import uuid

from access.app import create_app
from common.migrations import upgrade
from common.settings import PlatformSettings
from facemodel.app import create_app as create_facemodel_app
from tests.access.conftest import Door, entry_pass, membership, site_settings
from tests.support import tokens
from tests.support.apps import asgi_client, serving
from tests.support.waiting import eventually


async def test_face_entry_waits_for_a_killed_facemodel_while_qr_goes_on(tmp_path, relay, face_service, photo_bytes):
    pair, device = relay
    socket_path = tmp_path / "fm.sock"
    settings = site_settings(tmp_path, pair.ours, socket_path)
    upgrade("access", settings.database_url("access"))

    def sidecar():
        return create_facemodel_app(PlatformSettings(environment="test"), faces=face_service, trusted_transport=True)

    face_service.galleries.clear()
    app = create_app(settings, keys=tokens.key_cache())
    async with asgi_client(app) as client:
        door = Door(app, client, device, settings)
        async with serving(sidecar(), uds=str(socket_path)):
            await door.enrol(face_service, photo_bytes, "obama.jpg")

        # The sidecar is gone (killed: its memory with it).
        face_service.galleries.clear()
        refused = await door.face(photo_bytes["obama2.jpg"])
        assert refused.status_code == 503, refused.text
        assert refused.headers.get("retry-after")
        walker = uuid.uuid4()
        await door.announce(membership(walker))
        by_qr = (await door.scan(entry_pass(walker))).json()
        assert by_qr["granted"] is True, by_qr

        async with serving(sidecar(), uds=str(socket_path)):

            async def face_works() -> bool:
                response = await door.face(photo_bytes["obama2.jpg"])
                return response.status_code == 200 and response.json()["granted"] is True

            await eventually(face_works, timeout=20, every=0.5)
