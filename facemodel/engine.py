"""The face pipeline: decode → detect (YuNet) → quality gate → align → embed (SFace).

onnxruntime sessions are created once per loaded pack with explicit thread settings;
one FaceEngine is immutable after construction, so a hot swap replaces the reference
to it and requests in flight finish on the engine they started with.
"""

from __future__ import annotations

import io
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray
from PIL import Image, UnidentifiedImageError

from common.face_alignment import similarity_to_template
from facemodel.packs import Manifest, PackError, read_manifest, verified_bytes
from facemodel.quality import CUT_OFF_REASONS, ENROLMENT_CUT_OFF, ENTRY_CUT_OFF, CutOffRules, Purpose, cut_off

MAX_PIXELS = 25_000_000
MAX_BYTES = 15 * 1024 * 1024
STRIDES = (8, 16, 32)

Float32Array = NDArray[np.float32]
UInt8Image = NDArray[np.uint8]


class ImageRejected(ValueError):
    """The upload is not an image we can read; ``reason`` is safe to show."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Detection:
    box: tuple[float, float, float, float]  # x, y, width, height in image pixels
    landmarks: Float32Array  # (5, 2): right eye, left eye, nose, right and left mouth corner
    score: float


@dataclass(frozen=True)
class Quality:
    ok: bool
    reason: str | None = None  # what the kiosk tells the member ("move closer", …)
    code: str | None = None


@dataclass(frozen=True)
class Analysis:
    model: str
    faces_seen: int
    detection: Detection | None
    quality: Quality
    embedding: Float32Array | None
    timings_ms: dict[str, float] = field(default_factory=dict)
    aligned: UInt8Image | None = None  # the 112x112 crop that was embedded


@dataclass(frozen=True)
class QualityRules:
    min_face_px: float = 64.0  # inter-box minimum side in the original image
    min_sharpness: float = 25.0  # variance of the Laplacian of the aligned grey crop
    min_brightness: float = 40.0
    max_brightness: float = 225.0
    max_yaw_ratio: float = 0.35  # nose offset from the eyes' midpoint / eye distance
    # A face cut off by the picture's edge, for a live frame and for an uploaded photo
    # (facemodel.quality).
    entry_cut_off: CutOffRules = ENTRY_CUT_OFF
    enrolment_cut_off: CutOffRules = ENROLMENT_CUT_OFF


def decode_image(data: bytes) -> UInt8Image:
    """BGR pixels of a JPEG/PNG upload, EXIF orientation applied; bounded in size."""
    if not data:
        raise ImageRejected("empty image")
    if len(data) > MAX_BYTES:
        raise ImageRejected(f"image larger than {MAX_BYTES // (1024 * 1024)} MiB")
    try:
        # Our own limit, lower than Pillow's, is checked below; Pillow's stays in force
        # for the rest of the process (in one-process mode other services decode uploads).
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as probe:  # reads the header only
                image_format, (width, height) = probe.format, probe.size
    except Image.DecompressionBombError as exc:
        raise ImageRejected(f"image exceeds {MAX_PIXELS // 1_000_000} megapixels") from exc
    except (UnidentifiedImageError, OSError) as exc:
        raise ImageRejected("not a JPEG or PNG image") from exc
    if image_format not in ("JPEG", "PNG"):
        raise ImageRejected(f"{image_format} images are not accepted, send JPEG or PNG")
    if width * height > MAX_PIXELS:
        raise ImageRejected(f"image of {width}x{height} exceeds {MAX_PIXELS // 1_000_000} megapixels")
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)  # applies EXIF orientation
    if pixels is None:
        raise ImageRejected("image data is truncated or corrupt")
    return np.asarray(pixels, dtype=np.uint8)


@dataclass(frozen=True)
class Recipe:
    """How a pack kind wants its pixels and how its detector's outputs read."""

    detector_rgb: bool
    detector_mean: float
    detector_scale: float
    recognizer_mean: float
    recognizer_scale: float
    score_threshold: float
    nms_threshold: float


RECIPES = {
    # YuNet: BGR 0-255; SFace: RGB 0-255 (normalises inside the graph).
    "yunet-sface": Recipe(False, 0.0, 1.0, 0.0, 1.0, 0.6, 0.3),
    # InsightFace SCRFD: RGB (x-127.5)/128; ArcFace: RGB (x-127.5)/127.5 (model_zoo's values).
    "insightface": Recipe(True, 127.5, 1 / 128, 127.5, 1 / 127.5, 0.5, 0.4),
}
SCRFD_ANCHORS = 2


class FaceEngine:
    def __init__(self, pack: Path, *, threads: int = 1, rules: QualityRules | None = None) -> None:
        self.manifest: Manifest = read_manifest(pack)
        self.recipe = RECIPES[self.manifest.kind]
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        try:
            self._detector = ort.InferenceSession(
                verified_bytes(pack, self.manifest.detector), options, providers=["CPUExecutionProvider"]
            )
            self._recognizer = ort.InferenceSession(
                verified_bytes(pack, self.manifest.recognizer), options, providers=["CPUExecutionProvider"]
            )
        except PackError:
            raise
        except Exception as exc:  # onnxruntime raises its own exception types
            raise PackError(f"onnxruntime refused the pack: {exc}") from exc
        for session, declared in (
            (self._detector, self.manifest.detector),
            (self._recognizer, self.manifest.recognizer),
        ):
            [actual] = session.get_inputs()
            # Dynamic dimensions (SCRFD exports) accept whatever the manifest fixes.
            shape_ok = len(actual.shape) == 4 and all(
                not isinstance(dim, int) or dim == want
                for dim, want in zip(actual.shape, declared.input_shape, strict=True)
            )
            if actual.name != declared.input_name or not shape_ok:
                raise PackError(
                    f"{declared.file}: model input {actual.name}{actual.shape} does not match the manifest's "
                    f"{declared.input_name}{list(declared.input_shape)}"
                )
        _, _, self._input_h, self._input_w = self.manifest.detector.input_shape
        if self.manifest.recognizer.input_shape[2:] != (112, 112):
            raise PackError("recognizer input must be 112x112")
        self.rules = rules or QualityRules()
        self.score_threshold = self.recipe.score_threshold
        self.nms_threshold = self.recipe.nms_threshold
        if self.manifest.kind == "insightface" and len(self._detector.get_outputs()) != 3 * len(STRIDES):
            raise PackError("SCRFD detector must give scores, boxes and 5 landmarks for strides 8, 16 and 32")

    @property
    def label(self) -> str:
        return self.manifest.label

    # -- stages ----------------------------------------------------------------------

    def detect(self, image: UInt8Image) -> list[Detection]:
        height, width = image.shape[:2]
        scale = min(self._input_w / width, self._input_h / height)
        resized = cv2.resize(image, (max(1, round(width * scale)), max(1, round(height * scale))))
        if self.recipe.detector_rgb:
            resized = cv2.cvtColor(resized, cv2.COLOR_BGR2RGB)
        canvas = np.zeros((self._input_h, self._input_w, 3), np.float32)
        canvas[: resized.shape[0], : resized.shape[1]] = resized
        canvas = (canvas - self.recipe.detector_mean) * self.recipe.detector_scale
        outputs = self._detector.run(None, {self.manifest.detector.input_name: canvas.transpose(2, 0, 1)[None]})
        if self.manifest.kind == "insightface":
            decoded = self._decode_scrfd(outputs)
        else:
            names = [output.name for output in self._detector.get_outputs()]
            decoded = self._decode_yunet(dict(zip(names, outputs, strict=True)))
        if decoded is None:
            return []
        all_boxes, all_scores, all_marks = decoded
        chosen = cv2.dnn.NMSBoxes(all_boxes.tolist(), all_scores.tolist(), self.score_threshold, self.nms_threshold)
        return [
            Detection(
                box=(
                    float(all_boxes[index][0] / scale),
                    float(all_boxes[index][1] / scale),
                    float(all_boxes[index][2] / scale),
                    float(all_boxes[index][3] / scale),
                ),
                landmarks=(all_marks[index] / scale).astype(np.float32),
                score=float(all_scores[index]),
            )
            for index in np.array(chosen).reshape(-1)
        ]

    def _decode_yunet(self, outputs: dict[str, Float32Array]) -> tuple[Float32Array, ...] | None:
        boxes, scores, marks = [], [], []
        for stride in STRIDES:
            cols = self._input_w // stride
            score = np.sqrt(
                np.clip(outputs[f"cls_{stride}"][0, :, 0], 0, 1) * np.clip(outputs[f"obj_{stride}"][0, :, 0], 0, 1)
            )
            keep = np.nonzero(score >= self.score_threshold)[0]
            if keep.size == 0:
                continue
            col, row = (keep % cols).astype(np.float32), (keep // cols).astype(np.float32)
            bbox = outputs[f"bbox_{stride}"][0, keep]
            cx, cy = (col + bbox[:, 0]) * stride, (row + bbox[:, 1]) * stride
            w, h = np.exp(bbox[:, 2]) * stride, np.exp(bbox[:, 3]) * stride
            boxes.append(np.stack([cx - w / 2, cy - h / 2, w, h], axis=1))
            kps = outputs[f"kps_{stride}"][0, keep].reshape(-1, 5, 2)
            marks.append((kps + np.stack([col, row], axis=1)[:, None, :]) * stride)
            scores.append(score[keep])
        if not boxes:
            return None
        return np.concatenate(boxes), np.concatenate(scores), np.concatenate(marks)

    def _decode_scrfd(self, outputs: list[Float32Array]) -> tuple[Float32Array, ...] | None:
        """InsightFace SCRFD: per stride, scores / box distances / landmark offsets for two
        anchors per cell, in that output order (insightface.model_zoo.scrfd)."""
        levels = len(STRIDES)
        boxes, scores, marks = [], [], []
        for level, stride in enumerate(STRIDES):
            score = outputs[level].reshape(-1)
            distances = outputs[level + levels].reshape(-1, 4) * stride
            offsets = outputs[level + 2 * levels].reshape(-1, 5, 2) * stride
            rows, cols = self._input_h // stride, self._input_w // stride
            grid_y, grid_x = np.mgrid[:rows, :cols]
            centres = np.repeat(np.stack([grid_x, grid_y], axis=-1).reshape(-1, 2) * stride, SCRFD_ANCHORS, axis=0)
            keep = np.nonzero(score >= self.score_threshold)[0]
            if keep.size == 0:
                continue
            centre = centres[keep].astype(np.float32)
            x1y1 = centre - distances[keep, :2]
            x2y2 = centre + distances[keep, 2:]
            boxes.append(np.concatenate([x1y1, x2y2 - x1y1], axis=1))
            marks.append(centre[:, None, :] + offsets[keep])
            scores.append(score[keep])
        if not boxes:
            return None
        return np.concatenate(boxes), np.concatenate(scores), np.concatenate(marks)

    @staticmethod
    def align(image: UInt8Image, detection: Detection) -> UInt8Image:
        # Least squares over all five points, as insightface's norm_crop: a robust fit
        # (LMEDS) drops points and measurably lowers same-person similarity (ADR 0035).
        matrix = similarity_to_template(detection.landmarks)
        if matrix is None:
            raise ValueError("landmarks are degenerate")
        return np.asarray(cv2.warpAffine(image, matrix, (112, 112), borderValue=0.0), dtype=np.uint8)

    def embed(self, aligned: UInt8Image) -> Float32Array:
        rgb = cv2.cvtColor(aligned, cv2.COLOR_BGR2RGB).astype(np.float32)
        rgb = (rgb - self.recipe.recognizer_mean) * self.recipe.recognizer_scale
        blob = rgb.transpose(2, 0, 1)[None]
        [output] = self._recognizer.run(None, {self.manifest.recognizer.input_name: blob})[0]
        vector = np.asarray(output, dtype=np.float32)
        norm = float(np.linalg.norm(vector))
        return vector / norm if norm > 0 else vector

    def judge(
        self, image: UInt8Image, detection: Detection, aligned: UInt8Image, purpose: Purpose = "entry"
    ) -> Quality:
        rules = self.rules
        height, width = image.shape[:2]
        _, _, w, h = detection.box
        cut_off_rules = rules.enrolment_cut_off if purpose == "enrolment" else rules.entry_cut_off
        if cut_off(detection.box, detection.landmarks, width, height, cut_off_rules):
            return Quality(False, CUT_OFF_REASONS[purpose], "face_cut_off")
        if min(w, h) < rules.min_face_px:
            return Quality(False, "move closer to the camera", "face_too_small")
        right_eye, left_eye, nose = detection.landmarks[0], detection.landmarks[1], detection.landmarks[2]
        eye_distance = float(np.linalg.norm(left_eye - right_eye))
        if (
            eye_distance < 1
            or abs(float(nose[0] - (right_eye[0] + left_eye[0]) / 2)) / eye_distance > rules.max_yaw_ratio
        ):
            return Quality(False, "face the camera", "face_turned")
        grey = cv2.cvtColor(aligned, cv2.COLOR_BGR2GRAY)
        brightness = float(grey.mean())
        if brightness < rules.min_brightness:
            return Quality(False, "too dark: step into the light", "too_dark")
        if brightness > rules.max_brightness:
            return Quality(False, "too bright: step out of direct light", "too_bright")
        if float(cv2.Laplacian(grey, cv2.CV_64F).var()) < rules.min_sharpness:
            return Quality(False, "hold still", "too_blurred")
        return Quality(True)

    # -- whole pipeline --------------------------------------------------------------

    def analyse(self, data: bytes, *, purpose: Purpose = "entry") -> Analysis:
        """Everything a caller needs to decide; raises ImageRejected for unusable input.
        ``purpose`` says where the picture comes from (a live frame, an uploaded photo)."""
        timings: dict[str, float] = {}
        started = time.perf_counter()
        image = decode_image(data)
        timings["decode"] = _since(started)
        return self.analyse_pixels(image, timings, purpose=purpose)

    def analyse_pixels(
        self, image: UInt8Image, timings: dict[str, float] | None = None, *, purpose: Purpose = "entry"
    ) -> Analysis:
        timings = {} if timings is None else timings
        started = time.perf_counter()
        detections = self.detect(image)
        timings["detect"] = _since(started)
        if not detections:
            return Analysis(self.label, 0, None, Quality(False, "no face found", "no_face"), None, timings)
        chosen = max(detections, key=lambda item: _prominence(item, image.shape[1], image.shape[0]))
        started = time.perf_counter()
        aligned = self.align(image, chosen)
        timings["align"] = _since(started)
        quality = self.judge(image, chosen, aligned, purpose)
        if not quality.ok:
            return Analysis(self.label, len(detections), chosen, quality, None, timings)
        started = time.perf_counter()
        embedding = self.embed(aligned)
        timings["embed"] = _since(started)
        return Analysis(self.label, len(detections), chosen, quality, embedding, timings, aligned)


def _prominence(detection: Detection, width: int, height: int) -> float:
    """Largest and most central face wins (area, lightly discounted by distance)."""
    x, y, w, h = detection.box
    centre_offset = np.hypot((x + w / 2) / width - 0.5, (y + h / 2) / height - 0.5)
    return float(w * h * (1.0 - 0.5 * centre_offset))


def _since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)
