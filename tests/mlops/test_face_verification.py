"""Face-pack verification on a genuine/impostor set built from public test photos (four
photos of two people, and six people cropped from a group photo), each augmented."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import pytest

from facemodel.engine import FaceEngine, decode_image
from mlops.face import threshold_at_far, verify_face_pack
from tests.support import testdata

# Latency is judged in the benchmarks; on a shared test machine only a runaway is refused.
BUDGET = 10_000.0


@pytest.fixture(scope="module")
def evaluation_dir(pack, photos, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("face-eval")
    for identity, names in (("obama", ("obama.jpg", "obama2.jpg", "obama3.jpg")), ("biden", ("biden.jpg",))):
        (root / identity).mkdir()
        for name in names:
            shutil.copyfile(photos / name, root / identity / name)
    group = decode_image(testdata.group_photo().read_bytes())
    for index, detection in enumerate(FaceEngine(pack).detect(group)):
        x, y, w, h = detection.box
        top, left = max(0, int(y - h)), max(0, int(x - w))
        cut = group[top : int(y + 2 * h), left : int(x + 2 * w)]
        scale = 300 / max(cut.shape[:2])
        enlarged = cv2.resize(cut, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
        (root / f"group-{index}").mkdir()
        cv2.imwrite(str(root / f"group-{index}" / "face.jpg"), enlarged)
    return root


def copy_pack(pack: Path, destination: Path, **manifest_changes: object) -> Path:
    shutil.copytree(pack, destination)
    manifest = json.loads((destination / "manifest.json").read_text())
    manifest.update(manifest_changes)
    (destination / "manifest.json").write_text(json.dumps(manifest))
    return destination


def test_threshold_at_far_lets_through_at_most_that_share_of_impostors():
    import numpy as np

    impostor = np.linspace(-0.2, 0.5, 2000, dtype=np.float32)
    threshold = threshold_at_far(impostor, 1e-3)
    assert int((impostor >= threshold).sum()) <= 2
    assert int((impostor >= threshold).sum()) == 2  # and not stricter than needed


def test_a_rebuilt_pack_passes_with_a_calibrated_threshold(pack, evaluation_dir, tmp_path):
    candidate = copy_pack(pack, tmp_path / "candidate")  # the same files: the same figures
    result = verify_face_pack(
        candidate_dir=candidate, deployed_dir=pack, evaluation_dir=evaluation_dir, far=1e-3, latency_budget_ms=BUDGET
    )
    assert result.passed, result.reasons
    assert result.candidate is not None
    assert result.deployed is not None
    assert result.identities == 8
    assert result.candidate.tar == result.deployed.tar >= 0.9
    assert result.candidate.impostor_pairs >= 1000  # enough for FAR 1e-3 to mean something
    assert result.candidate.genuine_pairs >= 100
    assert 0.2 < result.candidate.threshold < 0.6  # near OpenCV's 0.363 for SFace
    assert result.candidate.latency_ms_p50 > 0
    assert result.metrics["tar"] == result.candidate.tar


def test_another_embedding_space_needs_a_re_enrolment_plan(pack, evaluation_dir, tmp_path):
    candidate = copy_pack(pack, tmp_path / "candidate", embedding_space="sface-2031")
    refused = verify_face_pack(
        candidate_dir=candidate, deployed_dir=pack, evaluation_dir=evaluation_dir, latency_budget_ms=BUDGET
    )
    assert not refused.passed
    assert any("re-enrolment plan" in reason for reason in refused.reasons)

    planned = verify_face_pack(
        candidate_dir=candidate,
        deployed_dir=pack,
        evaluation_dir=evaluation_dir,
        latency_budget_ms=BUDGET,
        reenrolment_plan="every member re-enrolled at the kiosk before the switch",
    )
    assert planned.passed, planned.reasons


def test_a_pack_that_does_not_match_its_manifest_or_misses_the_budget_fails(pack, evaluation_dir, tmp_path):
    tampered = copy_pack(pack, tmp_path / "tampered")
    (tampered / "recognizer.onnx").write_bytes((tampered / "recognizer.onnx").read_bytes()[:-10])
    result = verify_face_pack(candidate_dir=tampered, deployed_dir=None, evaluation_dir=evaluation_dir)
    assert not result.passed
    assert result.reasons == ("candidate: recognizer.onnx: sha256 does not match the manifest",)

    slow = verify_face_pack(
        candidate_dir=pack, deployed_dir=None, evaluation_dir=evaluation_dir, latency_budget_ms=0.01, min_tar=1.01
    )
    assert not slow.passed
    assert any("over the budget" in reason for reason in slow.reasons)
    assert any("below the floor" in reason for reason in slow.reasons)
