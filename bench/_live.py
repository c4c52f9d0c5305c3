"""Load generators for the live-run benchmarks (not a benchmark itself): runners streaming
a point a second and friends watching, each kind in its own process; plus a bare
``websockets`` broadcast server, the library's floor, measured in the same run (and a
floor on ``picows``, a compiled WebSocket library, to compare with).

Every delivery is counted: a watcher keeps the distinct (socket, point time) pairs it
received, so the caller can compare them with the points each run had accepted and fail
on a shortfall or a repeat. Latencies are kept for every delivery (no sampling), and
after the runners stop the watchers drain until nothing more arrives instead of cutting
off late deliveries.
"""

from __future__ import annotations

import asyncio
import gc
import json
import math
import os
import random
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench._common import run_on_service_loop

CONNECT_CONCURRENCY = 64


@dataclass
class Watched:
    """What the watcher processes saw: every delivery's latency (ms), the distinct
    deliveries per watcher socket, repeats, and how long they listened."""

    latencies_ms: list[float]
    to_server_ms: list[float]
    received: int
    distinct: int
    repeats: int
    distinct_per_socket: list[int]
    drain_s: float


async def _keep_gc_short() -> None:
    """The load generator must not be what is measured: freeze its long-lived sockets out
    of the garbage collector's scans, as the running service does."""
    while True:
        gc.freeze()
        await asyncio.sleep(2)


async def _connect_all(urls: list[tuple[str, str]]) -> tuple[list[Any], list[dict[str, Any]]]:
    """Connect every socket and read its first message; a server that answers "try
    again later" (1013, e.g. its database pool busy with a crowd of handshakes) is
    retried after a pause, as the app does."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed, InvalidHandshake

    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def one(url: str, token: str) -> tuple[Any, dict[str, Any]]:
        error: BaseException | None = None
        async with gate:
            for attempt in range(10):
                try:
                    socket = await connect(
                        url, additional_headers={"authorization": f"Bearer {token}"}, open_timeout=30,
                        ping_interval=None, max_queue=None, compression=None,
                    )  # fmt: skip
                    return socket, json.loads(await socket.recv())
                except (OSError, TimeoutError, ConnectionClosed, InvalidHandshake) as exc:
                    error = exc
                    await asyncio.sleep(0.5 * (attempt + 1))
            raise RuntimeError(f"could not connect to {url}: {error!r}")

    pairs = await asyncio.gather(*(one(url, token) for url, token in urls))
    return [socket for socket, _ in pairs], [hello for _, hello in pairs]


def runners_process(urls: list[tuple[str, str]], seconds: float, pipe: Any) -> None:
    """One WebSocket per runner; sends the run ids, waits for "go", streams a point a
    second for ``seconds``, then reports points sent and accepted per runner."""

    async def main() -> None:
        freezer = asyncio.create_task(_keep_gc_short())
        sockets, hellos = await _connect_all(urls)
        run_ids = [hello["run_id"] for hello in hellos]
        pipe.send(run_ids)
        # Off the loop: the sockets must keep answering pings while the watchers connect.
        await asyncio.to_thread(pipe.recv)  # watchers are in: go
        sent = [0] * len(sockets)
        refused = [0] * len(sockets)

        async def read(index: int, socket: Any) -> None:
            async for frame in socket:
                message = json.loads(frame)
                if message.get("type") == "refused":
                    refused[index] += len(message.get("invalid", [])) + sum(message.get("reasons", {}).values())

        readers = [asyncio.create_task(read(index, socket)) for index, socket in enumerate(sockets)]

        async def run(index: int, socket: Any) -> None:
            rng = random.Random(index)
            lat, lon = 37.5444 + rng.uniform(-0.01, 0.01), 127.0374 + rng.uniform(-0.01, 0.01)
            heading = rng.uniform(0, 2 * math.pi)
            await asyncio.sleep(rng.uniform(0, 1))  # phones are not synchronised
            deadline = time.monotonic() + seconds
            next_at = time.monotonic()
            while time.monotonic() < deadline:
                lat += 3.0 * math.sin(heading) / 111_000
                lon += 3.0 * math.cos(heading) / 88_000
                point = {"type": "point", "t": time.time(), "lat": lat, "lon": lon, "acc": 6.0, "hr": 140}
                await socket.send(json.dumps(point))
                sent[index] += 1
                next_at += 1.0
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))

        started = time.monotonic()
        await asyncio.gather(*(run(index, socket) for index, socket in enumerate(sockets)))
        elapsed = time.monotonic() - started
        await asyncio.sleep(1.0)  # the last "refused" answers are on their way
        pipe.send({"sent": sent, "refused": refused, "elapsed": elapsed})
        await asyncio.to_thread(pipe.recv)  # the watchers have drained: hang up
        for reader in readers:
            reader.cancel()
        freezer.cancel()
        await asyncio.gather(*(socket.close() for socket in sockets), return_exceptions=True)
        pipe.send("closed")

    asyncio.run(main())


def watchers_process(urls: list[tuple[str, str]], pipe: Any) -> None:
    """Watches; after "drain" (with the number of deliveries expected) listens on until
    all arrived or nothing came for a quiet spell, then reports every delivery."""

    async def main() -> None:
        freezer = asyncio.create_task(_keep_gc_short())
        sockets, _ = await _connect_all(urls)  # each has said "watching"
        latencies: list[float] = []
        to_server: list[float] = []
        seen: list[set[float]] = [set() for _ in sockets]
        received = 0
        pipe.send("ready")

        async def watch(index: int, socket: Any) -> None:
            nonlocal received
            mine = seen[index]
            async for frame in socket:
                now = time.time()
                message = json.loads(frame)
                # "position" from running; "point" is the runner's own frame, forwarded
                # verbatim by the bare broadcast server.
                if message.get("type") in ("position", "point"):
                    received += 1
                    mine.add(message["t"])
                    latencies.append((now - message["t"]) * 1000)
                    if "at" in message:
                        to_server.append((message["at"] - message["t"]) * 1000)

        tasks = [asyncio.create_task(watch(index, socket)) for index, socket in enumerate(sockets)]
        command = await asyncio.to_thread(pipe.recv)
        expected, quiet_s, limit_s = command["expected"], command["quiet_s"], command["limit_s"]
        started = time.monotonic()
        last, last_change = received, time.monotonic()
        while received < expected and time.monotonic() - last_change < quiet_s and time.monotonic() - started < limit_s:
            await asyncio.sleep(0.1)
            if received != last:
                last, last_change = received, time.monotonic()
        drain_s = time.monotonic() - started
        for task in tasks:
            task.cancel()
        freezer.cancel()
        distinct = [len(values) for values in seen]
        pipe.send(
            {
                "latencies_ms": latencies,
                "to_server_ms": to_server,
                "received": received,
                "distinct": sum(distinct),
                "repeats": received - sum(distinct),
                "distinct_per_socket": distinct,
                "drain_s": drain_s,
            }
        )
        await asyncio.gather(*(socket.close() for socket in sockets), return_exceptions=True)

    asyncio.run(main())


RUNNER = ""  # what ``bare_route`` answers for a runner's path (a watcher's: the run id)


def bare_route(path: str) -> str | None:
    """A bare floor's routing: ``RUNNER`` for /ws/runs, the run id for
    /ws/runs/{id}/watch, None for anything else."""
    parts = [part for part in path.split("?")[0].split("/") if part]
    if parts == ["ws", "runs"]:
        return RUNNER
    if len(parts) == 4 and parts[:2] == ["ws", "runs"] and parts[3] == "watch":
        return parts[2]
    return None


def bare_server_process(port: int, ready: Any) -> None:
    """The library's floor: receive a runner's frame and hand it to ``broadcast`` for the
    run's watchers, nothing else (no parsing, no filter, no storage, no token check).

    The whole process's CPU is the floor a fan-out server is held to (it receives each
    frame and keeps its sockets alive, as any server must). The CPU of the ``broadcast``
    calls alone (thread CPU time around each, kernel sends on loopback included) is kept
    too: that is what "the library's broadcast" costs per delivery, without the receiving.
    ``ready`` answers "report" with those counters."""

    async def main() -> None:
        import threading

        from websockets.asyncio.server import ServerConnection, broadcast, serve

        watchers: dict[str, set[ServerConnection]] = {}
        counters = {"broadcast_s": 0.0, "frames": 0, "deliveries": 0}
        clock = time.thread_time

        async def handle(connection: ServerConnection) -> None:
            watched = bare_route(connection.request.path if connection.request else "/")
            if watched == RUNNER:
                run_id = str(uuid.uuid4())
                group = watchers.setdefault(run_id, set())
                await connection.send(json.dumps({"type": "started", "run_id": run_id}))
                async for frame in connection:
                    began = clock()
                    broadcast(group, frame)
                    counters["broadcast_s"] += clock() - began
                    counters["frames"] += 1
                    counters["deliveries"] += len(group)
            elif watched is not None:
                group = watchers.setdefault(watched, set())
                group.add(connection)
                try:
                    await connection.send(json.dumps({"type": "watching"}))
                    await connection.wait_closed()
                finally:
                    group.discard(connection)

        def answer() -> None:  # a thread: the counters are read while the loop runs
            while ready.recv() == "report":
                ready.send(dict(counters))

        gc.freeze()
        async with serve(handle, "127.0.0.1", port, compression=None, ping_interval=20, max_size=256 * 1024):
            ready.send("up")
            threading.Thread(target=answer, daemon=True).start()
            await asyncio.Event().wait()

    # The replicas' loop (SMARTGYM_EVENT_LOOP): the floor is the library's on that loop.
    run_on_service_loop(main())


def bare_picows_server_process(port: int, ready: Any) -> None:
    """The floor on ``picows``, a WebSocket library whose frame parsing, sending and
    keep-alive are compiled (Cython), over its default TCP transport (aiofastnet, in
    place of the loop's): what a server pays per delivery when receiving a frame is not
    Python. It speaks what the load generators expect of the bare server (``started``,
    ``watching``, a runner's frames forwarded verbatim), pings every socket every 20 s as
    the ``websockets`` floor does, and answers "report" on ``ready`` as that one does.
    Unlike ``websockets`` it does not check that a text frame is UTF-8."""

    async def main() -> None:
        import threading

        from picows import (
            WSAutoPingStrategy,
            WSCloseCode,
            WSFrame,
            WSListener,
            WSMsgType,
            WSTransport,
            ws_create_server,
        )

        watchers: dict[str, set[WSTransport]] = {}
        counters = {"broadcast_s": 0.0, "frames": 0, "deliveries": 0}
        clock = time.thread_time

        class Peer(WSListener):
            """Answers a close with a close, as every WebSocket endpoint must."""

            def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
                if frame.msg_type == WSMsgType.CLOSE:
                    # A close without a code is answered with 1000 (code 0 is not sendable).
                    has_code = frame.payload_size >= 2
                    code = frame.get_close_code() if has_code else WSCloseCode.OK
                    transport.send_close(code, frame.get_close_message() if has_code else None)
                    transport.disconnect()

        class Runner(Peer):
            def __init__(self) -> None:
                self.run_id = str(uuid.uuid4())
                self.group = watchers.setdefault(self.run_id, set())

            def on_ws_connected(self, transport: WSTransport) -> None:
                transport.send(WSMsgType.TEXT, json.dumps({"type": "started", "run_id": self.run_id}).encode())

            def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
                if frame.msg_type != WSMsgType.TEXT:
                    super().on_ws_frame(transport, frame)
                    return
                payload = frame.get_payload_as_bytes()
                began = clock()
                for watcher in self.group:
                    watcher.send(WSMsgType.TEXT, payload)
                counters["broadcast_s"] += clock() - began
                counters["frames"] += 1
                counters["deliveries"] += len(self.group)

        class Watcher(Peer):
            def __init__(self, run_id: str) -> None:
                self.group = watchers.setdefault(run_id, set())

            def on_ws_connected(self, transport: WSTransport) -> None:
                self.group.add(transport)
                transport.send(WSMsgType.TEXT, json.dumps({"type": "watching"}).encode())

            def on_ws_disconnected(self, transport: WSTransport) -> None:
                self.group.discard(transport)

        def route(request: Any) -> WSListener | None:  # None: 404, no socket
            watched = bare_route(request.path.decode())
            if watched is None:
                return None
            return Runner() if watched == RUNNER else Watcher(watched)

        def answer() -> None:  # a thread: the counters are read while the loop runs
            while ready.recv() == "report":
                ready.send(dict(counters))

        gc.freeze()
        server = await ws_create_server(
            route, "127.0.0.1", port, enable_auto_ping=True, auto_ping_idle_timeout=20,
            auto_ping_reply_timeout=20, auto_ping_strategy=WSAutoPingStrategy.PING_PERIODICALLY,
            max_frame_size=256 * 1024,
        )  # fmt: skip
        async with server:
            ready.send("up")
            threading.Thread(target=answer, daemon=True).start()
            await asyncio.Event().wait()

    run_on_service_loop(main())


def system_seconds(pid: int) -> float:
    """System (kernel) CPU time a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[12]) / os.sysconf("SC_CLK_TCK")


def expected_deliveries(accepted_per_run: list[int], watcher_runs: list[int]) -> list[int]:
    """Per watcher socket, how many positions it should have received."""
    return [accepted_per_run[run] for run in watcher_runs]


async def drive(
    runner_urls: list[tuple[str, str]],
    watchers_for: Any,
    *,
    seconds: float,
    pids: dict[str, int],
    watcher_processes: int = 1,
    quiet_s: float = 3.0,
    limit_s: float = 30.0,
    on_tick: Any = None,
    tick_s: float = 5.0,
    on_window: Any = None,
) -> dict[str, Any]:
    """Runners connect (one process), then ``watchers_for(run_ids)`` gives each watcher's
    (url, token, run index); watchers connect (``watcher_processes`` processes), the
    runners stream for ``seconds``, the watchers drain. CPU seconds of every pid in
    ``pids`` are taken over streaming + drain; ``on_tick(seconds since go)`` is called
    every ``tick_s`` while the runners stream; ``on_window("start")`` and ``on_window("end")``
    where the CPU window starts and ends (for processes that come and go). Returns the
    figures and the raw deliveries."""
    import multiprocessing

    from bench._common import cpu_seconds, progress

    context = multiprocessing.get_context("fork")
    runner_pipe, runner_end = context.Pipe()
    runner = context.Process(target=runners_process, args=(runner_urls, seconds, runner_end), daemon=True)
    runner.start()
    runner_end.close()  # ours: a runner process that dies is then an EOF here, not a hang
    progress(f"connecting {len(runner_urls)} runners")
    run_ids: list[str] = await asyncio.to_thread(runner_pipe.recv)
    plan: list[tuple[str, str, int]] = watchers_for(run_ids)
    slices = [plan[n::watcher_processes] for n in range(watcher_processes)]
    watchers = []
    for part in slices:
        pipe, end = context.Pipe()
        process = context.Process(
            target=watchers_process, args=([(url, token) for url, token, _ in part], end), daemon=True
        )
        process.start()
        end.close()
        watchers.append((process, pipe, part))
    progress(f"connecting {len(plan)} watchers")
    for _, pipe, _ in watchers:
        if await asyncio.to_thread(pipe.recv) != "ready":
            raise RuntimeError("a watcher process failed")
    progress(f"streaming for {seconds:.0f} s")
    cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    if on_window is not None:
        on_window("start")
    system_before = {name: system_seconds(pid) for name, pid in pids.items()}
    wall_before = time.monotonic()
    runner_pipe.send("go")

    async def ticking() -> None:
        started = time.monotonic()
        while True:
            await asyncio.sleep(tick_s)
            on_tick(time.monotonic() - started)

    ticker = asyncio.create_task(ticking()) if on_tick is not None else None
    sent = await asyncio.to_thread(runner_pipe.recv)
    if ticker is not None:
        ticker.cancel()
    accepted = [max(0, s - r) for s, r in zip(sent["sent"], sent["refused"], strict=True)]
    for _, pipe, part in watchers:
        expected = sum(accepted[run] for _, _, run in part)
        pipe.send({"expected": expected, "quiet_s": quiet_s, "limit_s": limit_s})
    progress("runners done; watchers draining")
    reports = [await asyncio.to_thread(pipe.recv) for _, pipe, _ in watchers]
    wall = time.monotonic() - wall_before
    progress(f"drained in {max(report['drain_s'] for report in reports):.1f} s")
    cpu = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in pids.items()}
    if on_window is not None:
        on_window("end")
    system = {name: system_seconds(pid) - system_before[name] for name, pid in pids.items()}
    runner_pipe.send("hang up")
    await asyncio.to_thread(runner_pipe.recv)
    runner.join(30)
    for process, _, _ in watchers:
        process.join(30)
    watched = Watched(
        latencies_ms=[value for report in reports for value in report["latencies_ms"]],
        to_server_ms=[value for report in reports for value in report["to_server_ms"]],
        received=sum(report["received"] for report in reports),
        distinct=sum(report["distinct"] for report in reports),
        repeats=sum(report["repeats"] for report in reports),
        distinct_per_socket=[value for report in reports for value in report["distinct_per_socket"]],
        drain_s=max(report["drain_s"] for report in reports),
    )
    expected_total = sum(accepted[run] for _, _, run in plan)
    per_socket_expected = [accepted[run] for part in slices for _, _, run in part]
    short_sockets = sum(
        1 for got, want in zip(watched.distinct_per_socket, per_socket_expected, strict=True) if got < want
    )
    return {
        "runners": len(runner_urls),
        "watchers": len(plan),
        "points_sent": sum(sent["sent"]),
        "points_accepted": sum(accepted),
        "stream_s": sent["elapsed"],
        "wall_s": wall,
        "expected": expected_total,
        "watched": watched,
        "short_sockets": short_sockets,
        "cpu_s": cpu,
        "system_cpu_s": system,  # the kernel's share of cpu_s (sends and receives on loopback)
    }
