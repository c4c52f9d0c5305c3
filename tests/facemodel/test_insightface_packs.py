"""InsightFace-format packs (SCRFD + ArcFace), which operators may supply. Their weights
cannot ship here (non-commercial licence), so small ONNX graphs with the same inputs and
outputs stand in: a detector that always reports one known face, a recogniser that is a
known linear map. What is tested is our side: pack wrapping, pre-processing and decoding."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from facemodel.engine import FaceEngine
from facemodel.holder import ModelHolder
from facemodel.packs import PackError, build_insightface_pack

STRIDES = (8, 16, 32)
FACE_CELL = (15, 20)  # row, column on the stride-16 grid
DISTANCES = np.array([4.0, 5.0, 4.0, 6.0], np.float32)  # left, top, right, bottom (stride units)
OFFSETS = np.array([[-1.5, -1.0], [1.5, -1.0], [0.0, 0.5], [-1.0, 2.0], [1.0, 2.0]], np.float32)
RNG = np.random.default_rng(3)
W = RNG.standard_normal((3, 512)).astype(np.float32)


def _zero_of(input_name: str, output: str, shape: tuple[int, ...], value: np.ndarray) -> tuple:
    """``value + 0 * mean(input)``: a constant that still consumes the graph input."""
    return [
        helper.make_node("ReduceMean", [input_name], [f"{output}_mean"], keepdims=0),
        helper.make_node("Mul", [f"{output}_mean", "zero"], [f"{output}_zero"]),
        helper.make_node("Add", [f"{output}_value", f"{output}_zero"], [output]),
    ], numpy_helper.from_array(value.reshape(shape), f"{output}_value")


def fake_scrfd(path) -> None:
    nodes, initializers, outputs = [], [numpy_helper.from_array(np.array(0.0, np.float32), "zero")], []
    tensors = {}
    for stride in STRIDES:
        cells = (640 // stride) ** 2 * 2
        tensors[f"score_{stride}"] = np.zeros((cells, 1), np.float32)
        tensors[f"bbox_{stride}"] = np.zeros((cells, 4), np.float32)
        tensors[f"kps_{stride}"] = np.zeros((cells, 10), np.float32)
    index = (FACE_CELL[0] * (640 // 16) + FACE_CELL[1]) * 2
    tensors["score_16"][index] = 0.9
    tensors["bbox_16"][index] = DISTANCES
    tensors["kps_16"][index] = OFFSETS.reshape(-1)
    order = [f"{kind}_{stride}" for kind in ("score", "bbox", "kps") for stride in STRIDES]
    for name in order:
        made, initializer = _zero_of("input.1", name, tensors[name].shape, tensors[name])
        nodes += made
        initializers.append(initializer)
        outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(tensors[name].shape)))
    graph = helper.make_graph(
        nodes,
        "scrfd-stand-in",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, "height", "width"])],
        outputs,
        initializers,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9), str(path))


def fake_arcface(path) -> None:
    graph = helper.make_graph(
        [
            helper.make_node("GlobalAveragePool", ["input.1"], ["pooled"]),
            helper.make_node("Flatten", ["pooled"], ["flat"]),
            helper.make_node("MatMul", ["flat", "W"], ["683"]),
        ],
        "arcface-stand-in",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, 112, 112])],
        [helper.make_tensor_value_info("683", TensorProto.FLOAT, [1, 512])],
        [numpy_helper.from_array(W, "W")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9), str(path))


@pytest.fixture
def insightface_dir(tmp_path):
    directory = tmp_path / "buffalo_test"
    directory.mkdir()
    fake_scrfd(directory / "det_10g.onnx")
    fake_arcface(directory / "w600k_r50.onnx")
    return directory


def test_insightface_directory_becomes_a_pack_with_its_licence(insightface_dir, tmp_path):
    manifest = build_insightface_pack(insightface_dir, tmp_path / "pack")
    assert manifest.kind == "insightface"
    assert manifest.embedding_dim == 512
    assert manifest.embedding_space == "insightface-w600k_r50"
    assert manifest.detector.input_shape == (1, 3, 640, 640)
    assert "non-commercial" in manifest.detector.licence


def test_scrfd_outputs_are_decoded_into_the_face_they_describe(insightface_dir, tmp_path):
    build_insightface_pack(insightface_dir, tmp_path / "pack")
    engine = FaceEngine(tmp_path / "pack")
    image = np.full((640, 640, 3), 128, np.uint8)
    [face] = engine.detect(image)
    centre = np.array([FACE_CELL[1] * 16, FACE_CELL[0] * 16], np.float32)
    left, top, right, bottom = DISTANCES * 16
    assert face.box == pytest.approx((centre[0] - left, centre[1] - top, left + right, top + bottom))
    np.testing.assert_allclose(face.landmarks, centre + OFFSETS * 16)
    assert face.score == pytest.approx(0.9)

    half = np.full((320, 320, 3), 128, np.uint8)  # letterboxing scales the answer back
    [smaller] = engine.detect(half)
    assert smaller.box == pytest.approx(tuple(value / 2 for value in face.box))


def test_arcface_preprocessing_is_rgb_centred_and_scaled(insightface_dir, tmp_path):
    build_insightface_pack(insightface_dir, tmp_path / "pack")
    engine = FaceEngine(tmp_path / "pack")
    crop = np.zeros((112, 112, 3), np.uint8)
    crop[..., 0], crop[..., 1], crop[..., 2] = 10, 100, 250  # B, G, R
    expected = ((np.array([250, 100, 10], np.float32) - 127.5) / 127.5) @ W
    expected /= np.linalg.norm(expected)
    np.testing.assert_allclose(engine.embed(crop), expected, atol=1e-5)


def test_a_swap_between_embedding_spaces_is_refused(insightface_dir, tmp_path, pack):
    holder = ModelHolder(FaceEngine(pack))
    insightface_pack = tmp_path / "pack"
    build_insightface_pack(insightface_dir, insightface_pack)
    with pytest.raises(PackError, match="re-enrol"):
        holder.deploy(insightface_pack)
    assert holder.current.manifest.kind == "yunet-sface"


def test_the_self_test_refuses_a_detector_that_sees_faces_everywhere(insightface_dir, tmp_path):
    build_insightface_pack(insightface_dir, tmp_path / "pack")
    candidate = FaceEngine(tmp_path / "pack")
    with pytest.raises(PackError, match="found a face in a blank frame"):
        ModelHolder(candidate).self_test(candidate)


def test_a_directory_without_the_right_models_is_refused(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(PackError, match="expected one SCRFD detector"):
        build_insightface_pack(empty, tmp_path / "pack")
