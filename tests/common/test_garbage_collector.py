"""What a service process does to Python's garbage collector once its kernel has started.

Probed in processes of their own: the settling happens once per process, and freezing or
unfreezing the test run's own heap would reach into every other test's leftovers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support.processes import clean_env

ROOT = Path(__file__).resolve().parents[2]

KERNEL_PROBE = """
import asyncio, gc, json
from common.collector import YOUNG_GC_THRESHOLD, settle_garbage_collector
from common.kernel import ServiceKernel
from common.observability import Metrics
from common.security import JwksCache, TokenVerifier
from common.settings import PlatformSettings

keys = JwksCache.static({"keys": []})
kernel = ServiceKernel(name="probe", settings=PlatformSettings(), metrics=Metrics(), keys=keys,
                       verifier=TokenVerifier(keys, issuer="probe", audience="probe"))
before = gc.get_threshold()
asyncio.run(kernel.start())
settled, frozen = gc.get_threshold(), gc.get_freeze_count()
gc.set_threshold(*before)
settle_garbage_collector()  # once per process: a second call changes nothing
print(json.dumps({"young": YOUNG_GC_THRESHOLD, "before": before, "settled": settled, "frozen": frozen,
                  "after_second": gc.get_threshold()}))
"""

PACING_PROBE = """
import asyncio, gc, json, weakref
from common.collector import GcPacing, settle_garbage_collector

FULL_EVERY = 12

class Node:
    partner = None

async def main():
    settle_garbage_collector()  # as the kernel does before any step
    settled = gc.get_threshold()
    pacing = GcPacing(full_every=FULL_EVERY)
    first, second = Node(), Node()
    first.partner, second.partner = second, first
    watched = weakref.ref(first)
    await pacing.step()  # the cycle is frozen
    kept_threshold = gc.get_threshold() == settled
    del first, second
    gc.collect()
    for _ in range(FULL_EVERY - 2):
        await pacing.step()
    alive_before_full_round = watched() is not None
    await pacing.step()
    return {"kept_threshold": kept_threshold, "alive_before_full_round": alive_before_full_round,
            "freed_at_full_round": watched() is None, "refrozen": gc.get_freeze_count() > 0}

print(json.dumps(asyncio.run(main())))
"""


def probe(code: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    seen: dict[str, object] = json.loads(done.stdout)
    return seen


def test_a_started_kernel_freezes_start_up_and_collects_the_young_generation_less_often() -> None:
    seen = probe(KERNEL_PROBE)
    before, young = seen["before"], seen["young"]
    assert isinstance(before, list)
    assert before[0] != young  # Python's own threshold, which the settling replaces
    assert seen["settled"] == [young, *before[1:]]
    assert isinstance(seen["frozen"], int)
    assert seen["frozen"] > 10_000  # the start-up heap, out of every collection's scan
    assert seen["after_second"] == before


def test_pacing_keeps_the_kernels_threshold_and_frees_cycles_that_died_frozen_at_the_full_round() -> None:
    assert probe(PACING_PROBE) == {
        "kept_threshold": True,
        "alive_before_full_round": True,
        "freed_at_full_round": True,
        "refrozen": True,
    }
