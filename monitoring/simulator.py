"""Fake equipment on loopback, for tests, benchmarks and a developer's laptop.

Every simulated device gets its own loopback address (127.1.x.y — Linux routes all of
127/8 to ``lo``), so a device that "dies" really closes its listening socket and a ping
gets *connection refused*, as from a dead treadmill, not a 404 from a shared server.
Each device answers HTTP echo requests and, when given a token and a monitoring
address, keeps a TCP heartbeat connection like the real firmware.

Modes (switch at any time): ``ok``; ``dead`` (listener and heartbeat closed: a crash, the
heartbeat socket closes at once); ``hang`` (accepts, never answers, heartbeats stop but
the connection stays open: a hang or a dead link without FIN); ``reboot`` (dead for
``reboot_s``, then back and reconnected, as after a quick restart); ``slow`` (answers after ``slow_s``, past the
ping timeout); ``flap`` (every other echo fails); ``garbage`` (answers with bytes that
are not HTTP and sends heartbeat lines that are not JSON); ``fault`` (answers pings but
its heartbeats report ``overheat``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import signal
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, cast, get_args

from common.periodic import LoopLag

log = logging.getLogger(__name__)

Mode = Literal["ok", "dead", "hang", "reboot", "slow", "flap", "garbage", "fault"]
MODES: tuple[str, ...] = get_args(Mode)
MAX_DEVICES = 64_000
OK_RESPONSE = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nok"
REFUSED_RETRY_S = 5.0
FAIL_RESPONSE = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 4\r\n\r\nbusy"


def device_address(index: int) -> str:
    if not 0 <= index < MAX_DEVICES:
        raise ValueError(f"the simulator places at most {MAX_DEVICES} devices")
    return f"127.1.{index // 250}.{index % 250 + 1}"


@dataclass
class SimulatedDevice:
    device_id: str
    host: str
    port: int
    token: str | None = None
    heartbeat_period_s: float = 600.0
    mode: Mode = "ok"
    echoes: int = 0
    heartbeats_sent: int = 0
    # (wall-clock time, User-Agent) of the latest echo requests: which replica pinged it.
    pings: deque[tuple[float, str]] = field(default_factory=lambda: deque(maxlen=64), repr=False)
    _server: asyncio.Server | None = field(default=None, repr=False)
    _connections: set[asyncio.BaseTransport] = field(default_factory=set, repr=False)
    _heartbeat: asyncio.Task[None] | None = field(default=None, repr=False)
    _flip: bool = field(default=False, repr=False)

    @property
    def ping_url(self) -> str:
        return f"http://{self.host}:{self.port}/echo"


class DeviceSimulator:
    def __init__(
        self,
        devices: list[SimulatedDevice],
        *,
        heartbeat_to: tuple[str, int] | None = None,
        slow_s: float = 3.0,
        reboot_s: float = 0.3,
        heartbeat_alternates: tuple[tuple[str, int], ...] = (),
    ) -> None:
        self.devices = {device.device_id: device for device in devices}
        self._heartbeat_to = heartbeat_to
        # Where a device reconnects when its listener is gone, in turn (as firmware given
        # several addresses, or a load balancer in front of replicas, would).
        self._heartbeat_alternates = heartbeat_alternates
        self._slow_s = slow_s
        self._reboot_s = reboot_s
        self._reboots: set[asyncio.Task[None]] = set()

    @classmethod
    def numbered(
        cls,
        count: int,
        port: int,
        *,
        prefix: str = "sim",
        heartbeat_to: tuple[str, int] | None = None,
        slow_s: float = 3.0,
        heartbeat_alternates: tuple[tuple[str, int], ...] = (),
    ) -> DeviceSimulator:
        devices = [SimulatedDevice(f"{prefix}-{index:05d}", device_address(index), port) for index in range(count)]
        return cls(devices, heartbeat_to=heartbeat_to, slow_s=slow_s, heartbeat_alternates=heartbeat_alternates)

    async def start(self) -> None:
        await self.start_listening()
        self.start_heartbeats()

    async def start_listening(self) -> None:
        """Open every echo endpoint (before registering: a registered device that does not
        answer is a fault)."""
        for device in self.devices.values():
            if device._server is None and device.mode != "dead":
                await self._listen(device)

    def start_heartbeats(self, *, ramp_s: float = 0.0) -> None:
        """Connect every device that has a token to monitoring's heartbeat listener; with
        ``ramp_s``, the devices come online evenly over that many seconds (a fleet powering
        up) instead of all in the same instant."""
        waiting = [device for device in self.devices.values() if device._heartbeat is None and device.mode != "dead"]
        for number, device in enumerate(waiting):
            self._start_heartbeat(device, after_s=ramp_s * number / max(1, len(waiting)))

    async def stop(self) -> None:
        for reboot in list(self._reboots):
            reboot.cancel()
        await asyncio.gather(*self._reboots, return_exceptions=True)
        for device in self.devices.values():
            await self._silence(device)

    async def set_mode(self, device_id: str, mode: Mode) -> float:
        """Switch a device's behaviour; returns the wall-clock time the failure began."""
        device = self.devices[device_id]
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}")
        previous, device.mode = device.mode, mode
        began = time.time()
        if mode in ("dead", "reboot"):
            await self._silence(device)
            if mode == "reboot":
                reboot = asyncio.create_task(self._come_back(device))
                self._reboots.add(reboot)
                reboot.add_done_callback(self._reboots.discard)
        elif previous in ("dead", "reboot"):
            await self._listen(device)
            self._start_heartbeat(device)
        return began

    async def _come_back(self, device: SimulatedDevice) -> None:
        await asyncio.sleep(self._reboot_s)
        if device.mode == "reboot":
            device.mode = "ok"
            await self._listen(device)
            self._start_heartbeat(device)

    # -- the echo endpoint --------------------------------------------------------------

    async def _listen(self, device: SimulatedDevice) -> None:
        # A protocol, not a stream handler: thousands of devices in one simulator process
        # answer thousands of pings a second, and the simulator must not be what is slow.
        loop = asyncio.get_running_loop()
        device._server = await loop.create_server(
            lambda: _EchoEndpoint(device, self._slow_s), device.host, device.port, reuse_address=True
        )

    async def _silence(self, device: SimulatedDevice) -> None:
        if device._server is not None:
            device._server.close()
            device._server = None
        for writer in list(device._connections):
            writer.close()
        if device._heartbeat is not None:
            device._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await device._heartbeat
            device._heartbeat = None

    # -- the heartbeat client -----------------------------------------------------------

    def _start_heartbeat(self, device: SimulatedDevice, *, after_s: float = 0.0) -> None:
        if self._heartbeat_to is not None and device.token is not None:
            device._heartbeat = asyncio.create_task(
                self._heartbeats(device, after_s), name=f"heartbeat:{device.device_id}"
            )

    async def _heartbeats(self, device: SimulatedDevice, after_s: float = 0.0) -> None:
        assert self._heartbeat_to is not None
        if after_s > 0:
            await asyncio.sleep(after_s)
        addresses = [self._heartbeat_to, *self._heartbeat_alternates]
        turn = 0
        while True:
            host, port = addresses[turn % len(addresses)]
            try:
                reader, writer = await asyncio.open_connection(host, port)
                try:
                    writer.write(json.dumps({"device_id": device.device_id, "token": device.token}).encode() + b"\n")
                    await writer.drain()
                    answer = json.loads(await reader.readline() or b"{}")
                    if not answer.get("ok"):
                        # Refused (a busy server timed the hello out, or the device is not
                        # known there yet): try again later, as firmware does.
                        log.warning("%s: heartbeat refused: %s", device.device_id, answer)
                        await asyncio.sleep(REFUSED_RETRY_S * random.uniform(1.0, 2.0))
                        continue
                    while True:
                        if writer.is_closing():  # uvloop raises RuntimeError on a write then
                            raise ConnectionResetError("monitoring closed the heartbeat connection")
                        if device.mode in ("ok", "slow", "flap", "fault"):
                            status = "overheat" if device.mode == "fault" else "ok"
                            writer.write(json.dumps({"status": status, "readings": {"uptime_s": 1.0}}).encode() + b"\n")
                            device.heartbeats_sent += 1
                        elif device.mode == "garbage":
                            writer.write(b"{not json\n")
                        await writer.drain()
                        await asyncio.sleep(device.heartbeat_period_s)
                finally:
                    writer.close()
            except (ConnectionError, OSError, json.JSONDecodeError):
                turn += 1
                # Monitoring restarting: reconnect, as firmware does, with jitter so that a
                # replica's devices do not all land on the next one in the same instant.
                await asyncio.sleep(random.uniform(1.0, 2.0))


class _EchoEndpoint(asyncio.Protocol):
    """One connection to a device's echo endpoint, answering by the device's mode."""

    def __init__(self, device: SimulatedDevice, slow_s: float) -> None:
        self.device, self.slow_s = device, slow_s
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.hung = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport, though not always an asyncio.Transport subclass: uvloop's
        # implement the same methods without inheriting from it.
        self.transport = cast(asyncio.Transport, transport)
        self.device._connections.add(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None:
            self.device._connections.discard(self.transport)

    def data_received(self, data: bytes) -> None:
        if self.hung:
            return
        self.buffer += data
        while not self.hung and (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head, self.buffer = self.buffer[: end + 4], self.buffer[end + 4 :]  # requests carry no body
            self.answer(head)
        if len(self.buffer) > 65536:
            self.close()

    def answer(self, head: bytes) -> None:
        device = self.device
        device.echoes += 1
        device.pings.append((time.time(), _agent(head)))
        assert self.transport is not None
        if device.mode == "hang":
            self.hung = True
        elif device.mode == "slow":
            asyncio.get_running_loop().call_later(self.slow_s, self.write, OK_RESPONSE)
        elif device.mode == "garbage":
            self.transport.write(b"\x00\xffNOT HTTP AT ALL\r\n\r\n")
            self.close()
        elif device.mode == "flap":
            device._flip = not device._flip
            self.transport.write(FAIL_RESPONSE if device._flip else OK_RESPONSE)
        else:
            self.transport.write(OK_RESPONSE)

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def _agent(head: bytes) -> str:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"user-agent":
            return value.strip().decode(errors="replace")
    return ""


# -- running it as a process (``smartgym simulate equipment``) ----------------------------------


@dataclass(frozen=True)
class ScriptedFailure:
    device_id: str
    mode: Mode
    after_s: float

    @classmethod
    def parse(cls, text: str) -> ScriptedFailure:
        """``dead:sim-00007@30`` — switch sim-00007 to ``dead`` 30 s after start."""
        try:
            mode, rest = text.split(":", 1)
            device_id, after = rest.rsplit("@", 1)
            if mode not in MODES:
                raise ValueError(mode)
            return cls(device_id, cast(Mode, mode), float(after))
        except ValueError as exc:
            raise ValueError(f"expected MODE:DEVICE@SECONDS (modes: {', '.join(MODES)}), got {text!r}") from exc


def branch_of(branch_id: str, index: int, branches: int) -> str:
    return branch_id if branches <= 1 else f"{branch_id}-{index % branches:03d}"


async def register_with_monitoring(
    simulator: DeviceSimulator,
    monitoring_url: str,
    bearer: str,
    *,
    branch_id: str,
    kind: str,
    period_s: int | None,
    branches: int = 1,
) -> None:
    """Register (or re-register) every simulated device; each gets a fresh heartbeat token.
    With ``branches`` above 1 the devices are dealt over BRANCH-000, BRANCH-001, …"""
    import httpx

    devices = list(simulator.devices.values())
    async with httpx.AsyncClient(base_url=monitoring_url, timeout=60) as client:
        for start in range(0, len(devices), 1000):
            chunk = devices[start : start + 1000]
            body = [
                {
                    "device_id": device.device_id,
                    "branch_id": branch_of(branch_id, start + number, branches),
                    "kind": kind,
                    "name": f"Simulated {kind} {device.device_id}",
                    "address": device.host,
                    "ping_url": device.ping_url,
                    "heartbeat_period_s": period_s,
                }
                for number, device in enumerate(chunk)
            ]
            for attempt in range(6):
                response = await client.put("/v1/equipment", json=body, headers={"authorization": f"Bearer {bearer}"})
                if response.status_code != 503:
                    break
                # Busy (several simulators registering thousands at once): back off, as an installer's import would.
                await asyncio.sleep(0.5 * 2**attempt)
            if response.status_code == 422 and "ping_url refused" in response.text:
                raise RuntimeError(
                    f"monitoring refuses 127.1.x.y ping URLs: declare the network, e.g. "
                    f'SMARTGYM_MONITORING_EQUIPMENT_NETWORKS=\'{{"{branch_id}": ["127.1.0.0/16"]}}\' '
                    f"({response.json()['detail']})"
                )
            response.raise_for_status()
            for item in response.json():
                simulator.devices[item["device_id"]].token = item["token"]
                simulator.devices[item["device_id"]].heartbeat_period_s = float(period_s or 600)


async def serve_control(simulator: DeviceSimulator, host: str, port: int, *, lag: LoopLag | None = None) -> Any:
    """A small HTTP API to switch devices from another process (tests, benchmarks)."""
    from aiohttp import web

    async def switch(request: web.Request) -> web.Response:
        device_id = request.match_info["device_id"]
        if device_id not in simulator.devices:
            return web.json_response({"error": f"no device {device_id}"}, status=404)
        try:
            mode = (await request.json())["mode"]
            began = await simulator.set_mode(device_id, mode)
        except (ValueError, KeyError, TypeError):
            return web.json_response({"error": f"body must be {{'mode': one of {list(MODES)}}}"}, status=422)
        return web.json_response({"device_id": device_id, "mode": mode, "began": began})

    async def pings(request: web.Request) -> web.Response:
        """Who pinged each device since ``since`` (wall-clock seconds): [[time, agent], …]."""
        try:
            since = float(request.query.get("since", "0"))
        except ValueError:
            return web.json_response({"error": "since must be a number"}, status=422)
        seen = {
            device.device_id: [[at, agent] for at, agent in device.pings if at >= since]
            for device in simulator.devices.values()
        }
        return web.json_response(seen)

    async def listing(_request: web.Request) -> web.Response:
        counts: dict[str, int] = {}
        for device in simulator.devices.values():
            counts[device.mode] = counts.get(device.mode, 0) + 1
        return web.json_response({"devices": len(simulator.devices), "modes": counts})

    async def lateness(_request: web.Request) -> web.Response:
        """When this simulator's event loop ran late (its devices answered late then)."""
        if lag is None:
            return web.json_response({"worst_s": None, "spells": []})
        return web.json_response({"worst_s": lag.worst, "spells": [list(spell) for spell in lag.spells]})

    app = web.Application()
    app.router.add_post("/devices/{device_id}/mode", switch)
    app.router.add_get("/lag", lateness)
    app.router.add_get("/devices", listing)
    app.router.add_get("/pings", pings)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


async def run(
    *,
    count: int,
    port: int,
    prefix: str,
    heartbeat_to: tuple[str, int] | None,
    monitoring_url: str | None,
    heartbeat_alternates: tuple[tuple[str, int], ...] = (),
    branches: int = 1,
    heartbeats: bool = True,
    ramp_s: float = 0.0,
    bearer: str | None,
    branch_id: str,
    kind: str,
    period_s: int | None,
    control_port: int | None,
    script: list[ScriptedFailure],
    ready: Callable[[str], None],
) -> None:
    simulator = DeviceSimulator.numbered(
        count, port, prefix=prefix, heartbeat_to=heartbeat_to, heartbeat_alternates=heartbeat_alternates
    )
    lag = LoopLag()
    lag.start()
    await simulator.start_listening()
    if monitoring_url is not None:
        if bearer is None:
            raise ValueError("registering with monitoring needs an operator or branch-owner token")
        await register_with_monitoring(
            simulator,
            monitoring_url,
            bearer,
            branch_id=branch_id,
            kind=kind,
            period_s=period_s if heartbeats else None,
            branches=branches,
        )
    if heartbeats:
        simulator.start_heartbeats(ramp_s=ramp_s)
    control = await serve_control(simulator, "127.0.0.1", control_port, lag=lag) if control_port else None
    ready(f"{count} devices on 127.1.x.y:{port}" + (f"; control on 127.0.0.1:{control_port}" if control_port else ""))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    started = loop.time()
    try:
        for failure in sorted(script, key=lambda item: item.after_s):
            delay = started + failure.after_s - loop.time()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.0, delay))
            if stop.is_set():
                break
            await simulator.set_mode(failure.device_id, failure.mode)
            ready(f"{failure.device_id} -> {failure.mode}")
        await stop.wait()
    finally:
        if control is not None:
            await control.cleanup()
        await simulator.stop()
        await lag.stop()
