"""The learned half of the task judge: an ONNX model from a pack, swapped by reference.

A pack is a directory with ``manifest.json`` and one ONNX file (digest checked on load),
like facemodel's packs. The model takes ``N x 3 x S x S`` RGB floats in 0..1 and returns
``N x 1``: the probability that a photo shows the task done. Until a trained pack is
deployed the holder has no model and the judge says "needs review" with confidence 0;
a verdict is never made up.
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, ValidationError

NO_MODEL = "none"


class PackError(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PackManifest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    format: Literal["smartgym-taskpack/1"] = "smartgym-taskpack/1"
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")
    version: str = Field(pattern=r"^[0-9]+\.[0-9]+\.[0-9]+$")
    file: str = Field(pattern=r"^[A-Za-z0-9._-]+\.onnx$")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    input_name: str
    input_size: int = Field(ge=8, le=1024)

    @property
    def label(self) -> str:
        return f"{self.name}@{self.version}"


@dataclass(frozen=True)
class Classifier:
    manifest: PackManifest
    session: Any  # onnxruntime.InferenceSession

    @classmethod
    def load(cls, pack: Path) -> Classifier:
        try:
            manifest = PackManifest.model_validate(json.loads((pack / "manifest.json").read_text()))
        except (OSError, ValueError, ValidationError) as exc:
            raise PackError(f"unreadable pack manifest: {exc}") from exc
        model = pack / manifest.file
        try:
            digest = hashlib.sha256(model.read_bytes()).hexdigest()
        except OSError as exc:
            raise PackError(f"model file missing: {manifest.file}") from exc
        if digest != manifest.sha256:
            raise PackError("model file does not match the manifest's digest")
        try:
            import onnxruntime
        except ImportError as exc:  # the 'face' extra brings it
            raise PackError("onnxruntime is not installed") from exc
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        session = onnxruntime.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        classifier = cls(manifest, session)
        classifier.probabilities([_grey_square(manifest.input_size)])  # refuse a pack that cannot run
        return classifier

    def probabilities(self, photos: list[bytes]) -> list[float]:
        size = self.manifest.input_size
        batch = np.stack([_tensor(photo, size) for photo in photos])
        (output,) = self.session.run(None, {self.manifest.input_name: batch})
        values = np.asarray(output, dtype=np.float64).reshape(len(photos), -1)[:, 0]
        if not np.all(np.isfinite(values)) or np.any(values < 0) or np.any(values > 1):
            raise PackError("the model answered outside 0..1")
        return [float(value) for value in values]


def _tensor(photo: bytes, size: int) -> np.ndarray:
    with Image.open(io.BytesIO(photo)) as image:
        rgb = image.convert("RGB").resize((size, size))
        return np.asarray(rgb, dtype=np.float32).transpose(2, 0, 1) / 255.0


def _grey_square(size: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (size, size), (128, 128, 128)).save(out, format="PNG")
    return out.getvalue()


class ClassifierHolder:
    """The active classifier (or none). A verdict reads ``current`` once, so a swap never
    changes the model under a verdict in flight. The previous classifier is kept, so a
    rollback swaps back without loading anything."""

    def __init__(self, classifier: Classifier | None = None) -> None:
        self._active = classifier
        self._previous: Classifier | None = None
        self._lock = threading.Lock()
        # The registry's version of each classifier deployed by mlops (by object id); one
        # loaded from settings at start is known by its pack's own version.
        self._versions: dict[int, str] = {}

    @property
    def current(self) -> Classifier | None:
        return self._active

    @property
    def version(self) -> str:
        return self.label_of(self._active)

    def label_of(self, classifier: Classifier | None) -> str:
        """What a verdict names as its model: the registry's version for a deployed one,
        the pack's ``name@version`` for one loaded by hand, ``none`` without a model."""
        if classifier is None:
            return NO_MODEL
        return self._versions.get(id(classifier), classifier.manifest.label)

    def version_of(self, classifier: Classifier | None) -> str | None:
        if classifier is None:
            return None
        return self._versions.get(id(classifier), classifier.manifest.version)

    @property
    def active_version(self) -> str | None:
        return self.version_of(self._active)

    @property
    def previous_version(self) -> str | None:
        return self.version_of(self._previous)

    def deploy(self, pack: Path, *, version: str | None = None) -> str:
        """Load and self-test ``pack``, then swap it in (blocking: run it in a thread)."""
        candidate = Classifier.load(pack)
        with self._lock:
            if version is not None:
                self._versions[id(candidate)] = version
            self._swap(candidate)
        return candidate.manifest.label

    def rollback(self) -> str:
        with self._lock:
            previous = self._previous
            if previous is None:
                raise PackError("no previous model to roll back to")
            self._swap(previous)
        return previous.manifest.label

    def _swap(self, candidate: Classifier) -> None:
        self._previous, self._active = self._active, candidate
        kept = {id(self._active), id(self._previous)}
        self._versions = {key: value for key, value in self._versions.items() if key in kept}


def write_pack(directory: Path, model_bytes: bytes, *, name: str, version: str, input_name: str, size: int) -> Path:
    """Write a pack around an ONNX model (used by training, and by tests with a model of
    their own making)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "model.onnx").write_bytes(model_bytes)
    manifest = PackManifest(
        name=name,
        version=version,
        file="model.onnx",
        sha256=hashlib.sha256(model_bytes).hexdigest(),
        input_name=input_name,
        input_size=size,
    )
    (directory / "manifest.json").write_text(manifest.model_dump_json(indent=2))
    return directory
