"""The face family's verification gate lives in ``mlops.face`` (genuine/impostor set, TAR
at a fixed FAR, threshold calibration, latency, embedding space); this module is the seam
the pipeline calls it through, so the pipeline runs (and refuses face candidates with a
clear reason) where that module is not available."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from mlops.settings import MlopsSettings


class FaceVerification(Protocol):
    passed: bool
    reasons: Any  # a sequence of strings
    metrics: Any  # a mapping (the calibrated threshold among them)


def face_verifier() -> Callable[..., FaceVerification] | None:
    try:
        module = importlib.import_module("mlops.face")
    except ImportError:
        return None
    verifier: Callable[..., FaceVerification] | None = getattr(module, "verify_face_pack", None)
    return verifier


def verify_face(
    *,
    candidate_dir: Path,
    deployed_dir: Path | None,
    settings: MlopsSettings,
    reenrolment_plan: str | None = None,
    verifier: Callable[..., FaceVerification] | None = None,
) -> dict[str, Any]:
    """Run the face gate; the report stored with the version (passed, reasons, metrics)."""
    verifier = verifier or face_verifier()
    if verifier is None:
        return {"passed": False, "reasons": ["face verification is not available in this build"], "metrics": {}}
    if settings.mlops_face_evaluation_dir is None:
        return {
            "passed": False,
            "reasons": ["no face evaluation set: set SMARTGYM_MLOPS_FACE_EVALUATION_DIR"],
            "metrics": {},
        }
    offered: dict[str, Any] = {
        "candidate_dir": candidate_dir,
        "deployed_dir": deployed_dir,
        "evaluation_dir": settings.mlops_face_evaluation_dir,
        "settings": settings,
        "far": settings.mlops_face_far,
        "min_tar": settings.mlops_face_min_tar,
        "latency_budget_ms": settings.mlops_face_latency_budget_ms,
        "reenrolment_plan": reenrolment_plan,
    }
    # Pass what the verifier takes: the seam survives the other side adding parameters.
    accepted = inspect.signature(verifier).parameters
    result = verifier(**{name: value for name, value in offered.items() if name in accepted})
    return {
        "passed": bool(result.passed),
        "reasons": [str(reason) for reason in result.reasons],
        "metrics": dict(result.metrics),
    }
