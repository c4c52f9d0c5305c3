"""Warming the inference threads at start: the memory overlapping entries need is taken
then, not as a step in RSS minutes into a steady load."""

from __future__ import annotations

import asyncio
import os

from facemodel.engine import FaceEngine
from facemodel.holder import ModelHolder
from facemodel.service import FaceService
from tests.support import testdata


def rss_mib() -> float:
    with open(f"/proc/{os.getpid()}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def test_entries_that_overlap_after_the_warm_up_take_no_more_memory(pack):
    service = FaceService(ModelHolder(FaceEngine(pack)), workers=2)
    try:
        await service.warm()
        photo = testdata.photos().joinpath("obama2.jpg").read_bytes()
        await service.analyse(photo)
        before = rss_mib()
        for _ in range(10):
            analyses = await asyncio.gather(service.analyse(photo), service.analyse(photo))
            assert all(analysis.embedding is not None for analysis in analyses)
        # Without the warm-up the first overlap grew this process by ~35 MiB.
        assert rss_mib() - before < 12
    finally:
        service.close()
