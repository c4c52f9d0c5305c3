"""What a service process does to Python's garbage collector: settled once after
start-up (every service, through the kernel), and paced by a process that keeps its heap
frozen between rounds (``GcPacing``). The pacing relies on the settling's threshold, so
both live here, where one can be read against the other (docs/adr/0059)."""

from __future__ import annotations

import gc

# Net allocations between two young collections (Python's default is 700): see
# settle_garbage_collector for why a service waits longer.
YOUNG_GC_THRESHOLD = 20_000

_settled = False


def settle_garbage_collector() -> None:
    """Once per process, after start-up: freeze the start-up heap, and collect the
    youngest generation less often.

    A service's heap after start-up (imported modules, the ORM's mappers, pydantic's
    validators: ~110k objects) lives as long as the process, yet every full collection
    walks it: ~50 ms on these CPUs, and a consumer applying a few thousand events a
    second runs one every few seconds. The loop stops meanwhile, so deliveries wait and
    acks are not sent; that was the paced event bus's p99 (~100 ms against a p50 of
    ~15 ms). Frozen, those objects are never scanned; what the service allocates later
    is still collected. The cost: a reference cycle among start-up objects that
    later becomes garbage is not freed (start-up builds things meant to last).

    What then fills the youngest generation is mostly in-flight work: each open socket's
    or request's suspended coroutine chain (a dozen objects, alive until its next frame or
    answer). At 700 net allocations a busy process collected it many times a second, each
    time scanning those chains again. Measured in alternating runs on a busy machine
    (docs/adr/0059): the gateway's CPU per live delivery fell by 4-20 %, and at 500
    requests/s it ran 1 collection instead of ~630. A process that freezes its heap again
    every few seconds also paces it with ``GcPacing``.
    """
    global _settled
    if _settled:
        return
    _settled = True
    gc.collect()  # start-up's own garbage is not frozen with it
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_GC_THRESHOLD, middle, oldest)


class GcPacing:
    """Keeps full collections short in a process holding many long-lived objects (a live
    replica's thousands of sockets and tracks): at every ``step`` the survivors are
    frozen (moved out of the collector's scans; cheap, it moves a list), so an automatic
    collection only looks at what is new. Every ``full_every`` steps everything is
    unfrozen and collected once, so cycles that died while frozen are freed. Measured in
    running at 1,000 runners: runner -> published p99 550 ms -> 25 ms.

    The young generation keeps the threshold the kernel settled (``YOUNG_GC_THRESHOLD``).
    Freezing resets the collector's allocation counts, so a replica making fewer net
    allocations than that between two steps never collects its young generation: a
    reference cycle that died since the last step, and that no young collection met, is
    frozen with the rest and freed at the full round. Measured in a replica streaming
    2,000 runs to 10,000 watchers, Python's threshold of 700 found 0-9 objects of cyclic
    garbage every 5 s while its collections cost ~4 % of a core; at 20,000 the replica
    spent ~7 % less CPU per delivery (docs/adr/0059). A step that collected the young
    generation itself before freezing gave that back in the runs measured."""

    def __init__(self, *, full_every: int) -> None:
        self._full_every = full_every
        self._rounds = 0

    async def step(self) -> None:
        self._rounds += 1
        if self._rounds % self._full_every == 0:
            gc.unfreeze()
            gc.collect()
        gc.freeze()
