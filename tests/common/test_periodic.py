"""A background job's rounds: the first after its own delay, the next at the interval, and a
failed round does not end the job."""

from __future__ import annotations

import asyncio

from common.periodic import Periodic


async def test_the_first_round_comes_after_its_own_delay_and_a_failure_does_not_end_the_job() -> None:
    rounds: list[float] = []
    loop = asyncio.get_running_loop()
    started = loop.time()

    async def action() -> None:
        rounds.append(loop.time() - started)
        if len(rounds) == 1:
            raise RuntimeError("a round that fails")

    job = Periodic("probe", 0.2, action, first_after_s=0.01)
    await job.start()
    try:

        async def two_rounds() -> None:
            while len(rounds) < 2:
                await asyncio.sleep(0.01)

        await asyncio.wait_for(two_rounds(), 5)
    finally:
        await job.stop()
    assert rounds[0] < 0.15  # long before the interval
    assert rounds[1] - rounds[0] >= 0.19


async def test_without_a_first_delay_the_first_round_waits_the_interval() -> None:
    ran = asyncio.Event()

    async def action() -> None:
        ran.set()

    job = Periodic("probe", 0.3, action)
    await job.start()
    try:
        await asyncio.sleep(0.1)
        assert not ran.is_set()
        await asyncio.wait_for(ran.wait(), 2)
    finally:
        await job.stop()
