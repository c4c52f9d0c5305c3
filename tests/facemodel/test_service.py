"""facemodel as a service: over a real Unix socket (access's path) and over TCP with
tokens; hot swap under load, rollback, corrupt packs, bad uploads."""

from __future__ import annotations

import asyncio

import pytest

from common.security import Role
from common.settings import PlatformSettings
from facemodel.app import create_app
from facemodel.packs import build_default_pack
from tests.support import tokens
from tests.support.apps import asgi_client


@pytest.fixture(scope="module")
def second_pack(wheel, tmp_path_factory):
    directory = tmp_path_factory.mktemp("packs2") / "yunet-sface-1.0.1"
    build_default_pack(wheel, directory, version="1.0.1")
    return directory


def jpeg(photo_bytes, name="obama.jpg"):
    return {"content": photo_bytes[name], "headers": {"content-type": "image/jpeg"}}


async def enrol(client, photo_bytes, gallery, subject, name):
    analysis = (await client.post("/v1/analyse", **jpeg(photo_bytes, name))).json()
    response = await client.put(
        f"/v1/galleries/{gallery}/subjects/{subject}",
        json={"embedding": analysis["embedding"], "embedding_space": "sface-2021dec"},
    )
    assert response.status_code == 204, response.text


async def test_identify_over_the_unix_socket(uds_client, photo_bytes):
    await enrol(uds_client, photo_bytes, "gangnam-1", "member-obama", "obama.jpg")
    await enrol(uds_client, photo_bytes, "gangnam-1", "member-biden", "biden.jpg")
    known = (await uds_client.post("/v1/galleries/gangnam-1/identify?k=2", **jpeg(photo_bytes, "obama2.jpg"))).json()
    assert known["match"]["subject"] == "member-obama"
    assert [match["subject"] for match in known["matches"]] == ["member-obama", "member-biden"]
    await uds_client.delete("/v1/galleries/gangnam-1/subjects/member-obama")
    erased = (await uds_client.post("/v1/galleries/gangnam-1/identify", **jpeg(photo_bytes, "obama2.jpg"))).json()
    assert erased["match"] is None  # below the threshold: no guess
    status = (await uds_client.get("/v1/models")).json()
    assert status["galleries"] == {"gangnam-1": 1}


async def test_one_to_one_verification(uds_client, photo_bytes):
    await enrol(uds_client, photo_bytes, "chain", "member-obama", "obama.jpg")
    same = (
        await uds_client.post("/v1/galleries/chain/subjects/member-obama/verify", **jpeg(photo_bytes, "obama3.jpg"))
    ).json()
    other = (
        await uds_client.post("/v1/galleries/chain/subjects/member-obama/verify", **jpeg(photo_bytes, "biden.jpg"))
    ).json()
    assert same["same_person"] is True
    assert other["same_person"] is False
    assert same["similarity"] > same["threshold"] > other["similarity"]
    unknown = await uds_client.post("/v1/galleries/chain/subjects/nobody/verify", **jpeg(photo_bytes, "biden.jpg"))
    assert unknown.status_code == 404


async def test_hot_swap_under_load_loses_nothing(uds_client, photo_bytes, pack, second_pack):
    await enrol(uds_client, photo_bytes, "b", "member-obama", "obama.jpg")
    labels: list[str] = []
    errors: list[str] = []
    stop = asyncio.Event()

    async def member_at_the_gate() -> None:
        while not stop.is_set():
            response = await uds_client.post("/v1/galleries/b/identify", **jpeg(photo_bytes, "obama2.jpg"))
            if response.status_code != 200 or response.json()["match"] is None:
                errors.append(response.text)
            else:
                labels.append(response.json()["analysis"]["model"])

    gates = [asyncio.create_task(member_at_the_gate()) for _ in range(4)]
    swaps = []
    for target in [second_pack, pack] * 3:
        swaps.append((await uds_client.post("/v1/models/deploy", json={"pack": str(target)})).json())
        await asyncio.sleep(0.2)
    stop.set()
    await asyncio.gather(*gates)
    assert errors == []
    assert set(labels) == {"yunet-sface@1.0.0", "yunet-sface@1.0.1"}  # every answer names its model
    assert [swap["active"] for swap in swaps] == ["yunet-sface@1.0.1", "yunet-sface@1.0.0"] * 3
    status = (await uds_client.get("/v1/models")).json()
    assert status["swap_count"] == 6
    assert status["active"] == "yunet-sface@1.0.0"
    rolled = (await uds_client.post("/v1/models/rollback")).json()
    assert rolled["active"] == "yunet-sface@1.0.1"


async def test_corrupt_pack_is_refused_and_the_old_model_keeps_serving(uds_client, photo_bytes, pack, tmp_path):
    import shutil

    broken = shutil.copytree(pack, tmp_path / "broken")
    (broken / "recognizer.onnx").write_bytes(b"not a model")
    refused = await uds_client.post("/v1/models/deploy", json={"pack": str(broken)})
    assert refused.status_code == 422
    assert "sha256" in refused.json()["detail"]
    missing = await uds_client.post("/v1/models/deploy", json={"pack": str(tmp_path / "nowhere")})
    assert missing.status_code == 422
    assert (await uds_client.post("/v1/analyse", **jpeg(photo_bytes))).json()["model"] == "yunet-sface@1.0.0"


async def test_a_pack_of_another_embedding_space_is_refused(uds_client, pack, tmp_path):
    import json
    import shutil

    other = shutil.copytree(pack, tmp_path / "other-space")
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["embedding_space"] = "arcface-r100"
    (other / "manifest.json").write_text(json.dumps(manifest))
    refused = await uds_client.post("/v1/models/deploy", json={"pack": str(other)})
    assert refused.status_code == 422
    assert "re-enrol" in refused.json()["detail"]


@pytest.mark.parametrize(
    ("content", "content_type", "status"),
    [
        (b"", "image/jpeg", 422),
        (b"GIF89a not really", "image/jpeg", 422),
        (b"\xff\xd8\xff\xe0 truncated", "image/jpeg", 422),
        (b"{}", "application/json", 415),
        (b"x" * (16 * 1024 * 1024), "image/jpeg", 413),
    ],
    ids=["empty", "not-an-image", "truncated", "wrong-content-type", "too-big"],
)
async def test_bad_uploads_get_a_4xx_and_the_worker_survives(uds_client, photo_bytes, content, content_type, status):
    response = await uds_client.post("/v1/analyse", content=content, headers={"content-type": content_type})
    assert response.status_code == status
    assert response.json()["detail"]
    assert (await uds_client.post("/v1/analyse", **jpeg(photo_bytes))).status_code == 200


async def test_tcp_callers_need_tokens_and_model_changes_need_an_operator(faces, photo_bytes, pack):
    app = create_app(PlatformSettings(environment="test"), faces=faces, keys=tokens.key_cache())
    async with asgi_client(app) as client:
        assert (await client.post("/v1/analyse", **jpeg(photo_bytes))).status_code == 401
        member = {"authorization": f"Bearer {tokens.issuer().issue('member-1', [Role.CUSTOMER])}"}
        operator = {"authorization": f"Bearer {tokens.issuer().issue('op-1', [Role.OPERATOR])}"}
        deploy = {"pack": str(pack)}
        assert (await client.post("/v1/models/deploy", json=deploy, headers=member)).status_code == 403
        assert (await client.post("/v1/models/deploy", json=deploy, headers=operator)).status_code == 200


async def test_metrics_show_stages_model_swaps_and_galleries(pack, photo_bytes, second_pack):
    from common.observability import Metrics
    from facemodel.app import create_service
    from facemodel.settings import FacemodelSettings

    metrics = Metrics()
    faces = create_service(FacemodelSettings(environment="test", facemodel_pack=pack), metrics)
    app = create_app(PlatformSettings(environment="test"), faces=faces, metrics=metrics, trusted_transport=True)
    async with asgi_client(app) as client:
        await enrol(client, photo_bytes, "g1", "m1", "obama.jpg")
        await client.post("/v1/models/deploy", json={"pack": str(second_pack)})
        exported = (await client.get("/metrics")).text
    faces.close()
    assert 'smartgym_facemodel_stage_seconds_count{stage="embed"} 1.0' in exported
    assert 'smartgym_facemodel_active_model{model="yunet-sface@1.0.1"} 1.0' in exported
    assert 'smartgym_facemodel_active_model{model="yunet-sface@1.0.0"} 0.0' in exported
    assert "smartgym_facemodel_swaps_total 1.0" in exported
    assert 'smartgym_facemodel_gallery_vectors{gallery="g1"} 1.0' in exported


async def test_a_large_identify_leaves_the_event_loop_free(faces, photo_bytes):
    """The gallery scan of a large gallery runs in a worker thread: the loop keeps ticking
    while it runs, and enrolments that arrive meanwhile stay consistent with it."""
    import threading
    import time

    import numpy as np

    from facemodel.gallery import Gallery

    scans: list[tuple[float, float, bool]] = []  # start, end, on the loop's thread

    class TimedGallery(Gallery):
        def identify(self, probe, *, k=1):
            started = time.monotonic()
            try:
                return super().identify(probe, k=k)
            finally:
                scans.append((started, time.monotonic(), threading.current_thread() is threading.main_thread()))

    size = 200_000  # ~100 MB: a scan of tens of ms on this CPU
    gallery = TimedGallery(128, embedding_space="sface-2021dec", capacity=size)
    vectors = np.random.default_rng(3).standard_normal((size - 1, 128), dtype=np.float32)
    for n, vector in enumerate(vectors[:1000]):
        gallery.upsert(f"m{n}", vector)
    gallery._matrix[1000 : size - 1] = vectors[1000:] / np.linalg.norm(vectors[1000:], axis=1, keepdims=True)
    gallery._subjects += [f"m{n}" for n in range(1000, size - 1)]
    gallery._rows.update({f"m{n}": n for n in range(1000, size - 1)})
    faces.galleries["big"] = gallery
    faces.put_vector("big", "member-obama", (await faces.analyse(photo_bytes["obama.jpg"])).embedding)

    ticks: list[float] = []

    async def ticker() -> None:
        while True:
            ticks.append(time.monotonic())
            await asyncio.sleep(0.001)

    beating = asyncio.create_task(ticker())
    for round_ in range(3):
        result = await faces.identify(photo_bytes["obama2.jpg"], gallery="big", k=3)
        assert result.best is not None
        assert result.best.subject == "member-obama"
        faces.put_vector("big", f"late-{round_}", vectors[round_])  # a change between scans
    beating.cancel()

    assert len(scans) == 3
    assert not any(on_loop for _, _, on_loop in scans)
    # The loop ran while the scans did: ticks fall inside the scan windows.
    assert any(start < tick < end for start, end, _ in scans for tick in ticks)
    assert len(gallery) == size + 3


async def test_a_vector_is_searched_without_a_frame_and_bad_ones_are_refused(uds_client, photo_bytes, faces):
    await enrol(uds_client, photo_bytes, "access~chain", "member-obama", "obama.jpg")
    await enrol(uds_client, photo_bytes, "access~chain", "member-biden", "biden.jpg")
    probe = (await uds_client.post("/v1/analyse", **jpeg(photo_bytes, "obama2.jpg"))).json()["embedding"]
    body = {"embedding": probe, "embedding_space": "sface-2021dec", "k": 2}
    found = (await uds_client.post("/v1/galleries/access~chain/search", json=body)).json()
    assert [match["subject"] for match in found["matches"]] == ["member-obama", "member-biden"]
    assert found["match"]["subject"] == "member-obama"
    assert found["threshold"] == 0.363
    missing = await uds_client.post("/v1/galleries/nowhere/search", json=body)
    assert missing.status_code == 404
    other_space = await uds_client.post("/v1/galleries/access~chain/search", json={**body, "embedding_space": "x"})
    assert other_space.status_code == 404
    for bad in ({**body, "embedding": probe[:10]}, {**body, "embedding": [0.0] * 128}, {**body, "k": 0}):
        assert (await uds_client.post("/v1/galleries/access~chain/search", json=bad)).status_code == 422
    # Over TCP a vector in needs an operator, like a vector put in.
    app = create_app(PlatformSettings(environment="test"), faces=faces, keys=tokens.key_cache())
    async with asgi_client(app) as client:
        kiosk = tokens.issuer().issue("device-1", [Role.DEVICE], ["gangnam"])
        refused = await client.post(
            "/v1/galleries/access~chain/search", json=body, headers={"authorization": f"Bearer {kiosk}"}
        )
        assert refused.status_code == 403
