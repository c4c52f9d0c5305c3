"""Warming the inference threads at start: the memory overlapping entries need is taken
then, not as a step in RSS minutes into a steady load (ADR 0063)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from facemodel.holder import warm_up_frame
from tests.support import testdata

# In a process of its own: a test worker's heap, grown by earlier tests, would hide a step.
MEASURE = """
import asyncio, sys
from pathlib import Path
from facemodel.engine import FaceEngine
from facemodel.holder import ModelHolder
from facemodel.service import FaceService

def rss_mib():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmRSS:"))

async def main():
    service = FaceService(ModelHolder(FaceEngine(Path(sys.argv[1]))), workers=2)
    await service.warm()
    photo = open(sys.argv[2], "rb").read()
    await service.analyse(photo)
    before = rss_mib()
    for _ in range(10):
        analyses = await asyncio.gather(service.analyse(photo), service.analyse(photo))
        assert all(analysis.embedding is not None for analysis in analyses)
    print(rss_mib() - before)
    service.close()

asyncio.run(main())
"""


def test_entries_that_overlap_after_the_warm_up_take_no_more_memory(pack: Path) -> None:
    photo = testdata.photos().joinpath("obama2.jpg")
    measured = subprocess.run(
        [sys.executable, "-c", MEASURE, str(pack), str(photo)], capture_output=True, text=True, timeout=120
    )
    assert measured.returncode == 0, measured.stderr
    # Without the warm-up this grew by ~85 MiB (one analysis before, so partly the first
    # analyses' own growth); with it, 2-5 MiB, once 16 with both cores busy.
    assert float(measured.stdout) < 30


def test_the_warm_up_frame_reaches_both_models(engine) -> None:
    analysis = engine.analyse(warm_up_frame())
    assert analysis.embedding is not None, analysis.quality
