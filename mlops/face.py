"""Verification of a face pack before it may be deployed: true-accept rate at a fixed
false-accept rate on a genuine/impostor set, the threshold calibrated at that rate,
latency per face, and the embedding-space rule (docs/adr/0035-face-pack-verification.md).

The pack is read straight from its files (``manifest.json`` plus ONNX, the format of
docs/adr/0009-face-model-packs.md) with onnxruntime: mlops does not run facemodel's code,
so a pack is judged by what its files say, the way every instance will load them.

The evaluation set is a directory of identities, one sub-directory each, holding photos
with one face (an operator's consented set in production; public test photos in tests).
Every photo is also augmented (mirrored, lighter, darker, slightly turned, smaller), which
gives genuine pairs even for identities with a single photo.
"""

from __future__ import annotations

import hashlib
import json
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from common.face_alignment import similarity_to_template

Float32Array = NDArray[np.float32]
UInt8Image = NDArray[np.uint8]

STRIDES = (8, 16, 32)
PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png"}
SUPPORTED_FORMAT = "smartgym-facepack/1"


class FacePackUnusable(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class PackScore:
    """One pack on the evaluation set."""

    label: str
    embedding_space: str
    tar: float
    threshold: float
    genuine_pairs: int
    impostor_pairs: int
    faces: int
    undetected: int
    latency_ms_p50: float
    latency_ms_p95: float


@dataclass(frozen=True)
class FaceVerification:
    passed: bool
    reasons: tuple[str, ...]
    far: float
    candidate: PackScore | None
    deployed: PackScore | None = None
    identities: int = 0
    metrics: dict[str, Any] = field(default_factory=dict)


def verify_face_pack(
    *,
    candidate_dir: Path,
    deployed_dir: Path | None,
    evaluation_dir: Path,
    far: float = 1e-3,
    min_tar: float = 0.9,
    max_tar_drop: float = 0.0,
    latency_budget_ms: float = 150.0,
    reenrolment_plan: str | None = None,
    threads: int = 1,
) -> FaceVerification:
    """Judge ``candidate_dir`` against the deployed pack on the same evaluation set.

    Passes when the candidate's TAR at ``far`` reaches ``min_tar`` and is not more than
    ``max_tar_drop`` below the deployed pack's, its median time per face (detect, align,
    embed) is within ``latency_budget_ms``, and it embeds into the deployed pack's space —
    or into another one with a ``reenrolment_plan`` (every member re-enrolled from a fresh
    capture before the swap; the deployment then carries ``reenrolment_approved``)."""
    identities = load_evaluation_set(evaluation_dir)
    if len(identities) < 2:
        return FaceVerification(False, ("the evaluation set needs at least two identities",), far, None)
    reasons: list[str] = []
    try:
        candidate_pack = FacePack(candidate_dir, threads=threads)
    except FacePackUnusable as exc:
        return FaceVerification(False, (f"candidate: {exc.reason}",), far, None, identities=len(identities))
    deployed_pack = FacePack(deployed_dir, threads=threads) if deployed_dir is not None else None
    other_space = deployed_pack is not None and candidate_pack.embedding_space != deployed_pack.embedding_space
    if other_space and not reenrolment_plan:
        # Refused before measuring anything: no figure can make it a hot swap.
        reason = (
            f"embeds into {candidate_pack.embedding_space!r}, the enrolled vectors are "
            f"{deployed_pack.embedding_space if deployed_pack else None!r}: a re-enrolment plan is needed"
        )
        return FaceVerification(False, (reason,), far, None, identities=len(identities))
    evaluation = _fingerprint(evaluation_dir)
    try:
        candidate = _scored(candidate_pack, identities, far, evaluation)
    except FacePackUnusable as exc:
        return FaceVerification(False, (f"candidate: {exc.reason}",), far, None, identities=len(identities))
    deployed = _scored(deployed_pack, identities, far, evaluation) if deployed_pack is not None else None
    if deployed is not None and candidate.tar < deployed.tar - max_tar_drop:
        reasons.append(f"TAR {candidate.tar:.4f} below the deployed pack's {deployed.tar:.4f} at FAR {far:g}")
    if candidate.tar < min_tar:
        reasons.append(f"TAR {candidate.tar:.4f} below the floor {min_tar:.4f} at FAR {far:g}")
    if candidate.latency_ms_p50 > latency_budget_ms:
        reasons.append(f"{candidate.latency_ms_p50:.1f} ms per face, over the budget of {latency_budget_ms:.0f} ms")
    if candidate.undetected > candidate.faces // 10:
        reasons.append(f"no face found in {candidate.undetected} of {candidate.faces} evaluation images")
    metrics: dict[str, Any] = {
        "tar": candidate.tar,
        "far": far,
        "threshold": candidate.threshold,
        "latency_ms_p50": candidate.latency_ms_p50,
        "latency_ms_p95": candidate.latency_ms_p95,
        "genuine_pairs": candidate.genuine_pairs,
        "impostor_pairs": candidate.impostor_pairs,
        "embedding_space": candidate.embedding_space,
    }
    if deployed is not None:
        metrics["deployed_tar"] = deployed.tar
    return FaceVerification(not reasons, tuple(reasons), far, candidate, deployed, len(identities), metrics)


# A pack's figures on a set do not change: the deployed pack is scored once, not once per
# candidate. Keyed by the manifest's digest (which holds every file's), the set and FAR.
_SCORES: dict[tuple[str, str, float], PackScore] = {}


def _scored(pack: FacePack, identities: dict[str, list[UInt8Image]], far: float, evaluation: str) -> PackScore:
    key = (pack.fingerprint, evaluation, far)
    if key not in _SCORES:
        _SCORES[key] = _score(pack, identities, far)
    return _SCORES[key]


# -- the evaluation set -------------------------------------------------------------------


def _fingerprint(directory: Path) -> str:
    """Which photos the set holds (names and sizes): a changed set is scored again."""
    digest = hashlib.sha256()
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            digest.update(f"{path.relative_to(directory)}:{path.stat().st_size}\n".encode())
    return digest.hexdigest()


def load_evaluation_set(directory: Path) -> dict[str, list[UInt8Image]]:
    """identity -> BGR photos (each augmented into several samples)."""
    identities: dict[str, list[UInt8Image]] = {}
    for folder in sorted(path for path in directory.iterdir() if path.is_dir()):
        photos = []
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() not in PHOTO_SUFFIXES:
                continue
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is not None:
                photos.extend(augmented(np.asarray(image, np.uint8)))
        if photos:
            identities[folder.name] = photos
    return identities


def augmented(image: UInt8Image) -> list[UInt8Image]:
    """The photo and four variations a gate camera produces: mirrored, lighter, darker and
    slightly turned, smaller (a face further away)."""
    height, width = image.shape[:2]
    turn = cv2.getRotationMatrix2D((width / 2, height / 2), 8, 1.0)
    smaller = cv2.resize(image, (max(1, int(width * 0.7)), max(1, int(height * 0.7))), interpolation=cv2.INTER_AREA)
    return [
        image,
        np.ascontiguousarray(image[:, ::-1]),
        np.asarray(cv2.convertScaleAbs(image, alpha=1.0, beta=35), np.uint8),
        np.asarray(cv2.convertScaleAbs(image, alpha=0.75, beta=0), np.uint8),
        np.asarray(cv2.warpAffine(image, turn, (width, height), borderMode=cv2.BORDER_REFLECT), np.uint8),
        np.asarray(smaller, np.uint8),
    ]


# -- the pack, from its files --------------------------------------------------------------


class FacePack:
    """A ``smartgym-facepack/1`` directory loaded with onnxruntime (YuNet + SFace kind)."""

    def __init__(self, directory: Path, *, threads: int = 1) -> None:
        import onnxruntime as ort

        try:
            raw = (directory / "manifest.json").read_bytes()
            manifest = json.loads(raw)
            self.fingerprint = hashlib.sha256(raw).hexdigest()  # the manifest holds every file's digest
        except (OSError, ValueError) as exc:
            raise FacePackUnusable(f"no readable manifest.json in {directory.name}") from exc
        if manifest.get("format") != SUPPORTED_FORMAT:
            raise FacePackUnusable(f"format {manifest.get('format')!r} is not {SUPPORTED_FORMAT}")
        if manifest.get("kind", "yunet-sface") != "yunet-sface":
            raise FacePackUnusable(f"packs of kind {manifest.get('kind')!r} are verified on an instance, not here")
        self.label = f"{manifest.get('name')}@{manifest.get('version')}"
        self.embedding_space = str(manifest.get("embedding_space"))
        self.embedding_dim = int(manifest.get("embedding_dim", 0))
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        sessions = []
        for role in ("detector", "recognizer"):
            declared = manifest.get(role) or {}
            data = _verified(directory, declared)
            try:
                sessions.append(ort.InferenceSession(data, options, providers=["CPUExecutionProvider"]))
            except Exception as exc:  # onnxruntime raises its own types
                raise FacePackUnusable(f"onnxruntime refused the {role}: {exc}") from exc
        self._detector, self._recognizer = sessions
        self._detector_input = str(manifest["detector"]["input_name"])
        self._recognizer_input = str(manifest["recognizer"]["input_name"])
        _, _, self._input_h, self._input_w = (int(value) for value in manifest["detector"]["input_shape"])
        self._output_names = [output.name for output in self._detector.get_outputs()]

    def embed_face(self, image: UInt8Image) -> Float32Array | None:
        """The most prominent face's unit embedding, or None when no face is found."""
        marks = self._landmarks(image)
        if marks is None:
            return None
        matrix = similarity_to_template(marks)
        if matrix is None:
            return None
        aligned = cv2.warpAffine(image, matrix, (112, 112), borderValue=0.0)
        blob = cv2.cvtColor(aligned, cv2.COLOR_BGR2RGB).astype(np.float32).transpose(2, 0, 1)[None]
        [output] = self._recognizer.run(None, {self._recognizer_input: blob})[0]
        vector = np.asarray(output, np.float32).reshape(-1)
        if vector.shape != (self.embedding_dim,) or not np.all(np.isfinite(vector)):
            raise FacePackUnusable(f"the recogniser gives {vector.shape}, the manifest says {self.embedding_dim}")
        norm = float(np.linalg.norm(vector))
        return vector / norm if norm > 0 else vector

    def _landmarks(self, image: UInt8Image, score_threshold: float = 0.6) -> Float32Array | None:
        height, width = image.shape[:2]
        scale = min(self._input_w / width, self._input_h / height)
        resized = cv2.resize(image, (max(1, round(width * scale)), max(1, round(height * scale))))
        canvas = np.zeros((self._input_h, self._input_w, 3), np.float32)
        canvas[: resized.shape[0], : resized.shape[1]] = resized
        outputs = dict(
            zip(
                self._output_names,
                self._detector.run(None, {self._detector_input: canvas.transpose(2, 0, 1)[None]}),
                strict=True,
            )
        )
        best_area, best_marks = 0.0, None
        for stride in STRIDES:
            cols = self._input_w // stride
            score = np.sqrt(
                np.clip(outputs[f"cls_{stride}"][0, :, 0], 0, 1) * np.clip(outputs[f"obj_{stride}"][0, :, 0], 0, 1)
            )
            for index in np.nonzero(score >= score_threshold)[0]:
                col, row = float(index % cols), float(index // cols)
                box = outputs[f"bbox_{stride}"][0, index]
                area = float(np.exp(box[2]) * np.exp(box[3])) * stride * stride
                if area > best_area:
                    kps = outputs[f"kps_{stride}"][0, index].reshape(5, 2)
                    best_area, best_marks = area, ((kps + np.array([col, row])) * stride / scale).astype(np.float32)
        return best_marks


def _verified(directory: Path, declared: dict[str, Any]) -> bytes:
    name = str(declared.get("file", ""))
    path = directory / name
    if not name or path.parent != directory or not path.is_file():
        raise FacePackUnusable(f"model file {name!r} missing from the pack")
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != declared.get("sha256"):
        raise FacePackUnusable(f"{name}: sha256 does not match the manifest")
    return data


# -- scoring -----------------------------------------------------------------------------


def _score(pack: FacePack, identities: dict[str, list[UInt8Image]], far: float) -> PackScore:
    vectors: list[Float32Array] = []
    owners: list[int] = []
    latencies: list[float] = []
    undetected = faces = 0
    for owner, photos in enumerate(identities.values()):
        for photo in photos:
            faces += 1
            started = time.perf_counter()
            vector = pack.embed_face(photo)
            latencies.append((time.perf_counter() - started) * 1000)
            if vector is None:
                undetected += 1
                continue
            vectors.append(vector)
            owners.append(owner)
    if len(set(owners)) < 2:
        raise FacePackUnusable("found faces of fewer than two identities in the evaluation set")
    matrix = np.stack(vectors)
    similarity = matrix @ matrix.T
    labels = np.asarray(owners)
    upper = np.triu(np.ones_like(similarity, dtype=bool), k=1)
    same = labels[:, None] == labels[None, :]
    genuine = similarity[upper & same]
    impostor = similarity[upper & ~same]
    threshold = threshold_at_far(impostor, far)
    tar = float(np.mean(genuine >= threshold)) if genuine.size else 0.0
    return PackScore(
        label=pack.label,
        embedding_space=pack.embedding_space,
        tar=round(tar, 4),
        threshold=round(threshold, 4),
        genuine_pairs=int(genuine.size),
        impostor_pairs=int(impostor.size),
        faces=faces,
        undetected=undetected,
        latency_ms_p50=round(statistics.median(latencies), 2),
        latency_ms_p95=round(float(np.percentile(latencies, 95)), 2),
    )


def threshold_at_far(impostor: NDArray[np.float32], far: float) -> float:
    """The lowest similarity threshold whose false-accept rate on ``impostor`` is at most
    ``far`` (strictly above the impostor score that would be one accept too many)."""
    ordered = np.sort(impostor)[::-1]
    allowed = int(np.floor(far * ordered.size))  # impostor pairs allowed to pass
    if allowed >= ordered.size:
        return float(ordered[-1])
    return float(np.nextafter(np.float32(ordered[allowed]), np.float32(np.inf)))
