"""The task judge's pack, as helper's judge loads it, and the small model inside it.

Format (``smartgym-taskpack/1``, documented by helper's classifier): a directory with
``manifest.json`` (format, name, semver version, file, sha256 of the file, input name,
input size; nothing else) and one ONNX model taking ``N x 3 x S x S`` RGB floats in 0..1
and returning ``N x 1``, the probability that the photo shows the task done. mlops
writes and checks that format itself: it never imports helper.

The model: a logistic regression over colour statistics on a ``G x G`` grid (mean and
mean of squares per channel and cell), computed inside the ONNX graph with AveragePool,
so what runs at the instance is exactly what was trained here; the standardisation is
folded into the weights.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, ValidationError

PACK_FORMAT = "smartgym-taskpack/1"
PACK_NAME = "task-judge"
INPUT_NAME = "image"
MODEL_FILE = "model.onnx"
INPUT_SIZE = 64
GRID = 4


class TaskPackManifest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    format: Literal["smartgym-taskpack/1"] = "smartgym-taskpack/1"
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")
    version: str = Field(pattern=r"^[0-9]+\.[0-9]+\.[0-9]+$")
    file: str = Field(pattern=r"^[A-Za-z0-9._-]+\.onnx$")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    input_name: str
    input_size: int = Field(ge=8, le=1024)


class PackInvalid(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# -- features (numpy twin of the graph) ----------------------------------------------------


def photo_tensor(photo: bytes, size: int = INPUT_SIZE) -> np.ndarray:
    """A photo as the judge feeds it: RGB, resized to ``size``, 0..1, channels first."""
    with Image.open(io.BytesIO(photo)) as image:
        rgb = image.convert("RGB").resize((size, size))
        return np.asarray(rgb, dtype=np.float32).transpose(2, 0, 1) / 255.0


def features(batch: np.ndarray, grid: int = GRID) -> np.ndarray:
    """``N x 3 x S x S`` → ``N x 6*G*G``: per cell and channel, the mean and the mean of squares."""
    n, channels, size, _ = batch.shape
    cell = size // grid
    blocks = batch[:, :, : cell * grid, : cell * grid].reshape(n, channels, grid, cell, grid, cell)
    means = blocks.mean(axis=(3, 5))
    squares = (blocks * blocks).mean(axis=(3, 5))
    return np.concatenate([means, squares], axis=1).reshape(n, -1).astype(np.float64)


# -- training ------------------------------------------------------------------------------


@dataclass(frozen=True)
class LogisticModel:
    weights: np.ndarray  # on raw features (standardisation folded in)
    bias: float
    parameters: dict[str, Any]

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(1.0 / (1.0 + np.exp(-(x @ self.weights + self.bias))), dtype=np.float64)


def train_logistic(x: np.ndarray, y: np.ndarray, *, l2: float = 1.0, iterations: int = 50) -> LogisticModel:
    """L2-regularised logistic regression by Newton's method (IRLS) on standardised features."""
    if len(x) == 0 or len(set(y.tolist())) < 2:
        raise ValueError("training needs examples of both labels")
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-8] = 1.0
    z = np.hstack([(x - mean) / scale, np.ones((len(x), 1))])
    w = np.zeros(z.shape[1])
    penalty = np.full(z.shape[1], l2)
    penalty[-1] = 0.0  # the intercept is not shrunk
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(z @ w)))
        gradient = z.T @ (p - y) + penalty * w
        hessian = (z * (p * (1 - p))[:, None]).T @ z + np.diag(penalty) + 1e-9 * np.eye(len(w))
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if np.max(np.abs(step)) < 1e-7:
            break
    weights = w[:-1] / scale
    bias = float(w[-1] - np.sum(w[:-1] * mean / scale))
    return LogisticModel(weights, bias, {"l2": l2, "iterations": iterations, "grid": GRID, "input_size": INPUT_SIZE})


# -- export --------------------------------------------------------------------------------


def export_onnx(model: LogisticModel, *, size: int = INPUT_SIZE, grid: int = GRID) -> bytes:
    """The ONNX graph: AveragePool of x and x*x over the grid → flatten → logistic."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    cell = size // grid
    window = [cell, cell]
    nodes = [
        helper.make_node("AveragePool", [INPUT_NAME], ["means"], kernel_shape=window, strides=window),
        helper.make_node("Mul", [INPUT_NAME, INPUT_NAME], ["squared"]),
        helper.make_node("AveragePool", ["squared"], ["squares"], kernel_shape=window, strides=window),
        helper.make_node("Concat", ["means", "squares"], ["cells"], axis=1),
        helper.make_node("Flatten", ["cells"], ["features"], axis=1),
        helper.make_node("MatMul", ["features", "weights"], ["weighted"]),
        helper.make_node("Add", ["weighted", "bias"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["probability"]),
    ]
    initializers = [
        numpy_helper.from_array(model.weights.astype(np.float32).reshape(-1, 1), "weights"),
        numpy_helper.from_array(np.array([model.bias], dtype=np.float32), "bias"),
    ]
    graph = helper.make_graph(
        nodes,
        "task_judge",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("probability", TensorProto.FLOAT, ["N", 1])],
        initializers,
    )
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="smartgym-mlops")
    onnx_model.ir_version = 8
    onnx.checker.check_model(onnx_model)
    return bytes(onnx_model.SerializeToString())


def pack_files(model_bytes: bytes, *, version: str, size: int = INPUT_SIZE) -> list[tuple[str, bytes]]:
    """The files of a pack: the manifest and the model."""
    manifest = TaskPackManifest(
        name=PACK_NAME,
        version=version,
        file=MODEL_FILE,
        sha256=hashlib.sha256(model_bytes).hexdigest(),
        input_name=INPUT_NAME,
        input_size=size,
    )
    return [("manifest.json", manifest.model_dump_json(indent=2).encode()), (MODEL_FILE, model_bytes)]


# -- loading and self-test (what the instance will do) --------------------------------------


@dataclass(frozen=True)
class LoadedPack:
    manifest: TaskPackManifest
    session: Any  # onnxruntime.InferenceSession

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        (output,) = self.session.run(None, {self.manifest.input_name: batch.astype(np.float32)})
        values = np.asarray(output, dtype=np.float64).reshape(len(batch), -1)[:, 0]
        if not np.all(np.isfinite(values)) or np.any(values < 0) or np.any(values > 1):
            raise PackInvalid("the model answered outside 0..1")
        return values


def load_pack(directory: Path) -> LoadedPack:
    """Load as helper's judge does: manifest checked, digest checked, one grey photo run."""
    try:
        manifest = TaskPackManifest.model_validate(json.loads((directory / "manifest.json").read_text()))
    except (OSError, ValueError, ValidationError) as exc:
        raise PackInvalid(f"unreadable pack manifest: {exc}") from exc
    try:
        data = (directory / manifest.file).read_bytes()
    except OSError as exc:
        raise PackInvalid(f"model file missing: {manifest.file}") from exc
    if hashlib.sha256(data).hexdigest() != manifest.sha256:
        raise PackInvalid("model file does not match the manifest's digest")
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    try:
        session = onnxruntime.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise PackInvalid(f"the model does not load: {exc}") from exc
    pack = LoadedPack(manifest, session)
    grey = np.full((1, 3, manifest.input_size, manifest.input_size), 128 / 255.0, dtype=np.float32)
    pack.probabilities(grey)
    return pack


def latency_ms(pack: LoadedPack, batch: np.ndarray, *, repeats: int = 30) -> float:
    """Median time of one single-photo inference, in ms."""
    one = batch[:1] if len(batch) else np.zeros((1, 3, pack.manifest.input_size, pack.manifest.input_size))
    pack.probabilities(one)  # warm-up
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        pack.probabilities(one)
        samples.append((time.perf_counter() - started) * 1000)
    return float(np.median(samples))
