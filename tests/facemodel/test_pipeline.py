"""The face pipeline with real inference on real photos."""

from __future__ import annotations

import io
import json
import shutil
import zipfile

import cv2
import numpy as np
import onnx
import pytest
from onnx.reference import ReferenceEvaluator
from PIL import Image

from facemodel.engine import FaceEngine, ImageRejected, decode_image
from facemodel.packs import SOURCE_FILES, PackError
from tests.support.pictures import png_header

THRESHOLD = 0.363  # OpenCV's recommended cosine threshold for SFace


def embedding(engine, photo_bytes, name):
    analysis = engine.analyse(photo_bytes[name])
    assert analysis.quality.ok, (name, analysis.quality)
    return analysis.embedding


def test_same_person_matches_and_other_people_do_not(engine, photo_bytes):
    obama = embedding(engine, photo_bytes, "obama.jpg")
    for other_obama in ("obama2.jpg", "obama3.jpg", "32bit.png"):
        assert float(obama @ embedding(engine, photo_bytes, other_obama)) >= THRESHOLD
    assert float(obama @ embedding(engine, photo_bytes, "biden.jpg")) < THRESHOLD
    assert engine.manifest.threshold == THRESHOLD


def test_every_answer_names_the_model_and_its_stage_timings(engine, photo_bytes):
    analysis = engine.analyse(photo_bytes["obama.jpg"])
    assert analysis.model == "yunet-sface@1.0.0"
    assert set(analysis.timings_ms) == {"decode", "detect", "align", "embed"}
    assert analysis.faces_seen == 1
    assert analysis.embedding.shape == (128,)
    assert abs(float(np.linalg.norm(analysis.embedding)) - 1) < 1e-5


def test_image_without_a_face(engine):
    canvas = np.full((480, 640, 3), 200, np.uint8)
    cv2.rectangle(canvas, (100, 100), (300, 300), (30, 90, 160), -1)
    _, encoded = cv2.imencode(".jpg", canvas)
    analysis = engine.analyse(encoded.tobytes())
    assert analysis.faces_seen == 0
    assert analysis.quality.code == "no_face"
    assert analysis.embedding is None


@pytest.mark.parametrize("name", ["obama_partial_face.jpg", "obama_partial_face2.jpg"])
def test_partial_face_gets_a_reason_not_a_match(engine, photo_bytes, name):
    analysis = engine.analyse(photo_bytes[name])
    assert analysis.quality.code == "face_cut_off"
    assert analysis.quality.reason == "move into the middle of the frame"
    assert analysis.embedding is None


def test_small_dark_and_blurred_faces_are_refused_with_reasons(engine, photo_bytes):
    image = decode_image(photo_bytes["obama.jpg"])
    far = np.zeros((1800, 1800, 3), np.uint8)
    far[800 : 800 + image.shape[0] // 8, 800 : 800 + image.shape[1] // 8] = cv2.resize(
        image, (image.shape[1] // 8, image.shape[0] // 8)
    )
    dark = (image * 0.1).astype(np.uint8)
    blurred = cv2.GaussianBlur(image, (0, 0), 9)
    codes = {}
    for label, pixels in (("far", far), ("dark", dark), ("blurred", blurred)):
        codes[label] = engine.analyse_pixels(pixels).quality.code
    assert codes["far"] in ("face_too_small", "no_face")
    assert codes["dark"] in ("too_dark", "no_face")
    assert codes["blurred"] in ("too_blurred", "no_face")


def test_exif_orientation_is_applied(engine, photo_bytes):
    upright = Image.open(io.BytesIO(photo_bytes["obama.jpg"]))
    rotated = upright.rotate(90, expand=True)  # stored sideways …
    exif = Image.Exif()
    exif[0x0112] = 6  # … with the EXIF tag that says "rotate 90° clockwise to view"
    buffer = io.BytesIO()
    rotated.save(buffer, format="JPEG", exif=exif, quality=95)
    reference = embedding(engine, photo_bytes, "obama.jpg")
    assert float(reference @ engine.analyse(buffer.getvalue()).embedding) > 0.9


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda photos: b"", "empty image"),
        (lambda photos: b"%PDF-1.4 not an image at all", "not a JPEG or PNG"),
        (lambda photos: photos["obama.jpg"][: len(photos["obama.jpg"]) // 3], "truncated or corrupt"),
        (lambda photos: _gif(), "GIF images are not accepted"),
        (lambda photos: _huge_png(), "exceeds 25 megapixels"),
        # Past Pillow's own bomb limit (twice 89.5 MP) the header alone is refused too.
        (lambda photos: png_header(20_000, 10_000), "exceeds 25 megapixels"),
    ],
    ids=["empty", "not-an-image", "truncated-jpeg", "gif", "50-megapixels", "200-megapixel-header"],
)
def test_bad_uploads_are_rejected_with_a_reason(engine, photo_bytes, make, reason):
    with pytest.raises(ImageRejected, match=reason):
        engine.analyse(make(photo_bytes))
    assert engine.analyse(photo_bytes["obama.jpg"]).quality.ok  # the engine is unharmed


def _gif() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="GIF")
    return buffer.getvalue()


def _huge_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (8_200, 6_200)).save(buffer, format="PNG")  # 50.8 megapixels, ~50 kB
    return buffer.getvalue()


def test_converted_models_compute_what_the_originals_compute(engine, wheel, photo_bytes):
    """The shipped int8 block-quantised graphs, run by ONNX's reference evaluator, against
    our folded float32 graphs in onnxruntime: same raw outputs (float tolerance)."""
    with zipfile.ZipFile(wheel) as archive:
        originals = {role: onnx.load_from_string(archive.read(member)) for role, member in SOURCE_FILES.items()}
    image = decode_image(photo_bytes["obama.jpg"])
    scale = 640 / max(image.shape[:2])
    resized = cv2.resize(image, (round(image.shape[1] * scale), round(image.shape[0] * scale)))
    canvas = np.zeros((640, 640, 3), np.float32)
    canvas[: resized.shape[0], : resized.shape[1]] = resized
    blob = canvas.transpose(2, 0, 1)[None]
    reference = ReferenceEvaluator(originals["detector"]).run(None, {"input": blob})
    ours = engine._detector.run(None, {"input": blob})
    for expected, actual in zip(reference, ours, strict=True):
        np.testing.assert_allclose(actual, expected, atol=2e-3, rtol=1e-3)

    analysis = engine.analyse(photo_bytes["obama.jpg"])
    aligned = engine.align(image, analysis.detection)
    face_blob = cv2.cvtColor(aligned, cv2.COLOR_BGR2RGB).astype(np.float32).transpose(2, 0, 1)[None]
    expected = ReferenceEvaluator(originals["recognizer"]).run(None, {"data": face_blob})[0].reshape(-1)
    actual = engine._recognizer.run(None, {"data": face_blob})[0].reshape(-1)
    cosine = float(expected @ actual / np.linalg.norm(expected) / np.linalg.norm(actual))
    assert cosine > 0.99999
    assert float(np.abs(expected - actual).max()) < 1e-3


def test_detections_match_opencvs_face_detector_on_the_original_model(engine, wheel, photo_bytes, tmp_path):
    with zipfile.ZipFile(wheel) as archive:
        original = tmp_path / "yunet_int8bq.onnx"
        original.write_bytes(archive.read(SOURCE_FILES["detector"]))
    detector = cv2.FaceDetectorYN.create(str(original), "", (640, 640), 0.6, 0.3)
    for name in ("obama.jpg", "biden.jpg", "obama2.jpg"):
        image = decode_image(photo_bytes[name])
        scale = 640 / max(image.shape[:2])
        resized = cv2.resize(image, (round(image.shape[1] * scale), round(image.shape[0] * scale)))
        canvas = np.zeros((640, 640, 3), np.uint8)
        canvas[: resized.shape[0], : resized.shape[1]] = resized
        _, faces = detector.detect(canvas)
        [ours] = engine.detect(canvas)
        theirs = faces[0]
        np.testing.assert_allclose(np.array(ours.box), theirs[:4], atol=1.5)  # pixels
        np.testing.assert_allclose(ours.landmarks.reshape(-1), theirs[4:14], atol=1.5)
        assert abs(ours.score - float(theirs[14])) < 0.01


def test_corrupt_packs_are_refused(pack, tmp_path):
    cases = {}
    tampered = shutil.copytree(pack, tmp_path / "tampered")
    data = bytearray((tampered / "detector.onnx").read_bytes())
    data[-10] ^= 0xFF
    (tampered / "detector.onnx").write_bytes(bytes(data))
    cases["tampered"] = (tampered, "sha256 does not match")
    missing = shutil.copytree(pack, tmp_path / "missing")
    (missing / "recognizer.onnx").unlink()
    cases["missing"] = (missing, "missing from the pack")
    reshaped = shutil.copytree(pack, tmp_path / "reshaped")
    manifest = json.loads((reshaped / "manifest.json").read_text())
    manifest["detector"]["input_shape"] = [1, 3, 320, 320]
    (reshaped / "manifest.json").write_text(json.dumps(manifest))
    cases["wrong-input-shape"] = (reshaped, "does not match the manifest")
    garbled = shutil.copytree(pack, tmp_path / "garbled")
    (garbled / "manifest.json").write_text("{not json")
    cases["bad-manifest"] = (garbled, "invalid manifest")
    for directory, reason in cases.values():
        with pytest.raises(PackError, match=reason):
            FaceEngine(directory)


def test_sessions_run_with_the_configured_threads(pack):
    for threads in (1, 2):
        engine = FaceEngine(pack, threads=threads)
        for session in (engine._detector, engine._recognizer):
            assert session.get_session_options().intra_op_num_threads == threads
            assert session.get_session_options().inter_op_num_threads == 1
