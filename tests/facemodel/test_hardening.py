"""facemodel's trust boundary: the Unix socket only its owner can use, and packs whose
manifest is checked (calibrated threshold, every file's digest) before any swap."""

from __future__ import annotations

import json
import shutil
import stat

import httpx

from common.security import Role
from common.settings import PlatformSettings
from facemodel.app import create_app
from tests.facemodel.test_service import enrol, jpeg
from tests.support import processes, tokens
from tests.support.apps import asgi_client


async def test_the_unix_socket_is_owner_only(pack, tmp_path):
    socket_path = tmp_path / "run" / "facemodel.sock"
    env = processes.clean_env(
        SMARTGYM_ENVIRONMENT="test",
        SMARTGYM_DATA_DIR=str(tmp_path),
        SMARTGYM_FACEMODEL_PACK=str(pack),
        SMARTGYM_FACEMODEL_SOCKET=str(socket_path),
        SMARTGYM_FACEMODEL_WORKERS="1",
    )
    from tests.support.apps import free_port

    port = free_port()
    log = tmp_path / "facemodel.log"
    process = processes.start(
        ["serve", "facemodel", "--host", "127.0.0.1", "--port", str(port)], env=env, cwd=tmp_path, log=log
    )
    try:
        processes.wait_healthy(f"http://127.0.0.1:{port}", process, log)
        for _ in range(100):
            if socket_path.exists():
                break
            __import__("time").sleep(0.05)
        mode = stat.S_IMODE(socket_path.stat().st_mode)
        assert mode == 0o600, oct(mode)
        transport = httpx.AsyncHTTPTransport(uds=str(socket_path))
        async with httpx.AsyncClient(transport=transport, base_url="http://facemodel") as client:
            assert (await client.get("/v1/models")).status_code == 200  # the owner still gets in
    finally:
        processes.stop(process)


def _tampered(pack, tmp_path, name, **changes):
    copy = shutil.copytree(pack, tmp_path / name)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest.update(changes)
    (copy / "manifest.json").write_text(json.dumps(manifest))
    return copy


async def test_a_pack_with_an_uncalibrated_threshold_is_refused_and_the_old_model_serves(
    uds_client, photo_bytes, pack, tmp_path
):
    lax = _tampered(pack, tmp_path, "lax", threshold=0.05, version="1.0.9")
    refused = await uds_client.post("/v1/models/deploy", json={"pack": str(lax)})
    assert refused.status_code == 422
    assert "calibrated range" in refused.json()["detail"]
    strict = _tampered(pack, tmp_path, "strict", threshold=0.95, version="1.0.8")
    assert (await uds_client.post("/v1/models/deploy", json={"pack": str(strict)})).status_code == 422
    swapped = _tampered(pack, tmp_path, "swapped", version="1.0.7")
    (swapped / "detector.onnx").write_bytes((pack / "recognizer.onnx").read_bytes())
    refused = await uds_client.post("/v1/models/deploy", json={"pack": str(swapped)})
    assert refused.status_code == 422
    assert "sha256" in refused.json()["detail"]
    status = (await uds_client.get("/v1/models")).json()
    assert (status["active"], status["threshold"], status["swap_count"]) == ("yunet-sface@1.0.0", 0.363, 0)
    assert (await uds_client.post("/v1/analyse", **jpeg(photo_bytes))).json()["model"] == "yunet-sface@1.0.0"


async def test_embeddings_go_only_to_services_operators_and_the_socket(faces, photo_bytes, uds_client):
    app = create_app(PlatformSettings(environment="test"), faces=faces, keys=tokens.key_cache())

    def as_(*roles: Role) -> dict[str, str]:
        token = tokens.issuer().issue(f"{roles[0]}-1", list(roles), ["gangnam"])
        return {"authorization": f"Bearer {token}", "content-type": "image/jpeg"}

    photo = photo_bytes["obama.jpg"]
    await enrol(uds_client, photo_bytes, "chain", "member-obama", "obama.jpg")
    async with asgi_client(app) as client:
        # A member's token could otherwise turn anybody's photo into their face vector.
        for person in (Role.CUSTOMER, Role.HELPER, Role.BRANCH_OWNER, Role.DEVICE):
            assert (await client.post("/v1/analyse", content=photo, headers=as_(person))).status_code == 403
        verdict = await client.post("/v1/quality", content=photo, headers=as_(Role.CUSTOMER))
        assert verdict.status_code == 200
        assert verdict.json()["quality"]["ok"] is True
        assert "embedding" not in verdict.json()
        # A kiosk identifying over TCP learns who matched, not the probe's vector.
        kiosk = await client.post("/v1/galleries/chain/identify", content=photo, headers=as_(Role.DEVICE))
        assert kiosk.json()["match"]["subject"] == "member-obama"
        assert kiosk.json()["analysis"]["embedding"] is None
        for trusted in (Role.SERVICE, Role.OPERATOR):
            analysed = await client.post("/v1/analyse", content=photo, headers=as_(trusted))
            assert len(analysed.json()["embedding"]) == 128
    # access, over the socket, still gets the probe's vector for its cold search.
    over_socket = await uds_client.post("/v1/galleries/chain/identify", **jpeg(photo_bytes))
    assert len(over_socket.json()["analysis"]["embedding"]) == 128
