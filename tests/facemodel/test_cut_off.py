"""A face cut off by the picture's edge: judged for an uploaded enrolment photo and for a
live gate frame separately, and worded for each."""

from __future__ import annotations

import httpx
import pytest

from common.settings import PlatformSettings
from facemodel.app import create_app
from facemodel.holder import ModelHolder
from facemodel.quality import CUT_OFF_REASONS, ENTRY_CUT_OFF, outside_share
from facemodel.service import FaceService
from tests.support.apps import serving
from tests.support.portraits import tight_crops

THRESHOLD = 0.363


@pytest.fixture(scope="module")
def portraits(engine, photos):
    # Every sixth of the 432 crops keeps this file fast; the benchmark judges them all.
    return list(tight_crops(engine, photos))[::6]


@pytest.fixture(scope="module")
def judged(engine, portraits):
    """Each portrait analysed as an enrolment upload and as a gate frame."""
    return [
        (portrait, engine.analyse_pixels(portrait.pixels, purpose="enrolment"), engine.analyse_pixels(portrait.pixels))
        for portrait in portraits
    ]


@pytest.fixture(scope="module")
def references(engine, photo_bytes):
    names = ("obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg")
    return {name: engine.analyse(photo_bytes[name]).embedding for name in names}


@pytest.fixture
async def face_client(engine, tmp_path):
    faces = FaceService(ModelHolder(engine), workers=1)
    socket_path = str(tmp_path / "facemodel.sock")
    app = create_app(PlatformSettings(environment="test"), faces=faces, trusted_transport=True)
    try:
        async with serving(app, uds=socket_path):
            transport = httpx.AsyncHTTPTransport(uds=socket_path)
            async with httpx.AsyncClient(transport=transport, base_url="http://facemodel", timeout=30) as client:
                yield client
    finally:
        faces.close()


def test_tight_portraits_are_enrolled_and_still_match_their_photo(judged, references):
    refused = []
    for portrait, analysis, _ in judged:
        if not analysis.quality.ok:
            refused.append((portrait.label, analysis.quality.code))
            continue
        assert float(analysis.embedding @ references[portrait.source]) >= THRESHOLD, portrait.label
    assert not refused


def test_at_the_gate_a_face_cut_at_the_forehead_is_asked_to_move(judged):
    codes = [entry.quality.code for _, _, entry in judged]
    # Most tight crops leave too little room at the gate, where stepping back is easy.
    assert codes.count("face_cut_off") > len(codes) // 2


@pytest.mark.parametrize("name", ["obama_partial_face.jpg", "obama_partial_face2.jpg"])
def test_a_face_cut_through_the_cheek_is_refused_in_both_places_in_their_words(engine, photo_bytes, name):
    entry = engine.analyse(photo_bytes[name], purpose="entry")
    enrolment = engine.analyse(photo_bytes[name], purpose="enrolment")
    assert (entry.quality.code, entry.quality.reason) == ("face_cut_off", "move into the middle of the frame")
    assert enrolment.quality.code == "face_cut_off"
    assert enrolment.quality.reason == CUT_OFF_REASONS["enrolment"]
    assert "move" not in enrolment.quality.reason
    assert entry.embedding is None
    assert enrolment.embedding is None


def test_a_box_partly_outside_is_judged_by_its_share_not_by_touching_the_edge(judged):
    """Tight crops whose box sticks out of the picture are enrolled as long as the share
    outside stays within the allowance (the old edge rule refused every one of them)."""
    sticking_out = []
    for portrait, analysis, _ in judged:
        height, width = portrait.pixels.shape[:2]
        share = outside_share(analysis.detection.box, width, height)
        if share > 0:
            sticking_out.append(share)
            assert analysis.quality.ok, portrait.label
    assert len(sticking_out) > len(judged) // 2
    assert max(sticking_out) > ENTRY_CUT_OFF.max_outside


async def test_the_api_takes_the_purpose_and_refuses_an_unknown_one(face_client, photo_bytes):
    image = photo_bytes["obama_partial_face.jpg"]
    headers = {"content-type": "image/jpeg"}
    enrolment = await face_client.post("/v1/analyse?purpose=enrolment", content=image, headers=headers)
    entry = await face_client.post("/v1/analyse", content=image, headers=headers)
    unknown = await face_client.post("/v1/analyse?purpose=selfie", content=image, headers=headers)
    assert enrolment.json()["quality"]["reason"] == CUT_OFF_REASONS["enrolment"]
    assert entry.json()["quality"]["reason"] == "move into the middle of the frame"
    assert unknown.status_code == 422
