"""What live sockets subscribe to and share: connection groups per topic, a race's
board, an outing's group snapshots, the nearby feed; and frame parsing helpers."""

from __future__ import annotations

import asyncio
import json
import struct
import time
import uuid
from collections.abc import Iterable
from typing import Any

from pydantic import ValidationError
from websockets.asyncio.server import ServerConnection, broadcast
from websockets.protocol import OPEN, SERVER

from running.nearby import NearbyIndex

# One encoder for every frame: ``json.dumps`` with separators builds a new encoder per
# call, which is half of what a small frame's encoding costs.
_ENCODER = json.JSONEncoder(separators=(",", ":"))


def dumps(message: dict[str, Any]) -> str:
    return _ENCODER.encode(message)


_SHORT_HEADS = [struct.pack("!BB", 0x81, length) for length in range(126)]
_MEDIUM_HEAD = struct.Struct("!BBH").pack  # a position frame is ~250 bytes


def text_frame(data: bytes) -> bytes:
    """An unmasked, unfragmented text frame: what a server sends, byte for byte."""
    length = len(data)
    if length < 126:
        head = _SHORT_HEADS[length]
    elif length < 65536:
        head = _MEDIUM_HEAD(0x81, 126, length)
    else:
        head = struct.pack("!BBQ", 0x81, 127, length)
    return head + data


def broadcast_text(connections: Iterable[ServerConnection], message: str) -> None:
    """``websockets.broadcast`` with the frame built once instead of once per socket.

    A server's frame is unmasked, so without extensions (the live server negotiates no
    compression) it is the same bytes for every socket; the library serialises it anew
    for each, which was a tenth of a replica's CPU at five watchers a run. A socket that
    is not open is skipped, and one whose write fails is logged and passed over, as the
    library does; one with extensions or a fragmented send under way is left to the
    library's own broadcast."""
    frame: bytes | None = None
    others: list[ServerConnection] = []
    for connection in connections:
        protocol = connection.protocol
        if protocol.state is not OPEN:
            continue
        if (
            protocol.extensions
            or protocol.writes
            or protocol.side is not SERVER
            or connection.send_in_progress is not None
        ):
            others.append(connection)
            continue
        if frame is None:
            frame = text_frame(message.encode())
        try:
            connection.transport.write(frame)
        except Exception as exc:  # one socket's failure must not cost the others the message
            connection.logger.warning("skipped broadcast: failed to write message: %r", exc)
    if others:
        broadcast(others, message)


class ConnectionGroup:
    """The sockets on this replica that follow one topic; one broadcast per message. A
    run's watchers are let go once it has finished: nothing more will come. ``sent_at``
    (monotonic) is the last write: a socket written to is not pinged (running.live_keepalive)."""

    def __init__(self) -> None:
        self.connections: set[ServerConnection] = set()
        self.sent_at = float("-inf")
        self._closing: set[asyncio.Task[None]] = set()

    def send(self, message: str) -> None:
        """To every socket of the group, stamped as its last write."""
        self.sent_at = time.monotonic()
        broadcast_text(self.connections, message)

    def deliver(self, topic: str, message: str) -> None:
        self.send(message)
        # Every run message is written with its type first (``dumps`` keeps the dict's
        # order): a prefix test, not a search through every position.
        if message.startswith('{"type":"finished"') and topic.startswith("run."):
            self.let_go("run finished")

    def let_go(self, reason: str) -> None:
        """Close every socket of the group normally: what they followed has ended."""
        loop = asyncio.get_running_loop()
        for connection in list(self.connections):
            # Held until done: the loop keeps only a weak reference to a task.
            closing = loop.create_task(connection.close(1000, reason))
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)


class RaceBoard:
    """One race's leaderboard as this replica hears it; pushed to its local racers at most
    once a second (and at once on a finish or the results)."""

    def __init__(self, race_id: uuid.UUID, mode: str, target: float) -> None:
        self.race_id = race_id
        self.mode = mode
        self.target = target
        self.connections: set[ServerConnection] = set()
        self._progress: dict[str, dict[str, Any]] = {}
        self._pending: asyncio.TimerHandle | None = None

    def deliver(self, topic: str, message: str) -> None:
        update = json.loads(message)
        if update.get("type") == "results":
            broadcast_text(self.connections, message)
            return
        known = self._progress.get(update["user_id"], {})
        # Competitors' positions ride along with the board (the last one each sent).
        self._progress[update["user_id"]] = {
            "user_id": update["user_id"],
            "name": update.get("name", known.get("name")),
            "distance_m": update["distance_m"],
            "pace_s_per_km": update.get("pace_s_per_km"),
            "speed_mps": update.get("speed_mps", 0.0),
            # A finisher runs on (a cool-down) and keeps sending progress: the finish stays.
            "finish_s": update.get("finish_s", known.get("finish_s")),
            "chip_s": update.get("chip_s", known.get("chip_s")),
            "lat": update.get("lat", known.get("lat")),
            "lon": update.get("lon", known.get("lon")),
        }
        if update.get("type") == "finish":
            self._push()
        elif self._pending is None:
            self._pending = asyncio.get_running_loop().call_later(1.0, self._push)

    def leaderboard(self) -> list[dict[str, Any]]:
        """Finishers first (by gun time, or distance in a time race), then by distance; each
        with the gap to the leader in metres and, when it can be known, seconds."""
        finished = sorted(
            (entry for entry in self._progress.values() if entry["finish_s"] is not None),
            key=lambda entry: entry["finish_s"] if self.mode == "distance" else -entry["distance_m"],
        )
        running = sorted(
            (entry for entry in self._progress.values() if entry["finish_s"] is None),
            key=lambda entry: -entry["distance_m"],
        )
        ordered = [*finished, *running]
        if not ordered:
            return []
        leader = ordered[0]
        leader_m = self.target if self.mode == "distance" and leader["finish_s"] is not None else leader["distance_m"]
        board = []
        for index, entry in enumerate(ordered, start=1):
            gap_m = (
                max(0.0, leader_m - entry["distance_m"]) if entry["finish_s"] is None or self.mode == "time" else 0.0
            )
            if entry["finish_s"] is not None and leader["finish_s"] is not None and self.mode == "distance":
                gap_s: float | None = entry["finish_s"] - leader["finish_s"]
            elif gap_m == 0.0:
                gap_s = 0.0
            else:  # how long the gap takes at this runner's current speed
                gap_s = gap_m / entry["speed_mps"] if entry["speed_mps"] and entry["speed_mps"] > 0.7 else None
            view = {key: value for key, value in entry.items() if key != "speed_mps"}
            view |= {
                "position": index,
                "gap_m": round(gap_m, 1),
                "gap_s": round(gap_s, 1) if gap_s is not None else None,
            }
            board.append(view)
        return board

    def _push(self) -> None:
        self._pending = None
        broadcast_text(
            self.connections, dumps({"type": "leaderboard", "race_id": str(self.race_id), "board": self.leaderboard()})
        )


class TokenBucket:
    def __init__(self, rate: float, burst: int) -> None:
        self._rate, self._burst = rate, float(burst)
        self._tokens, self._at = float(burst), time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
        self._at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


class NearbyFeed:
    """This replica's copy of the nearby index, fed by every replica's coarsened updates."""

    def __init__(self) -> None:
        self.index = NearbyIndex()

    def deliver(self, topic: str, message: str) -> None:
        update = json.loads(message)
        if update.get("gone"):
            self.index.remove(update["user_id"])
        else:
            self.index.update(update["user_id"], update["name"], update["lat"], update["lon"])


class OutingGroup(ConnectionGroup):
    """An outing's members on this replica: everyone's latest position, pushed as one
    ``group`` message every few seconds (a walk needs no second-by-second dots, and one
    message for the group costs less than one per member per second)."""

    def __init__(self, every_s: float) -> None:
        super().__init__()
        self._every_s = every_s
        self._latest: dict[str, dict[str, Any]] = {}
        self._pending: asyncio.TimerHandle | None = None

    def deliver(self, topic: str, message: str) -> None:
        update = json.loads(message)
        if update.get("type") == "position":
            self._latest[update["user_id"]] = {key: update[key] for key in ("user_id", "t", "lat", "lon")}
            if self._pending is None:
                self._pending = asyncio.get_running_loop().call_later(self._every_s, self._push)
            return
        if update.get("type") == "left":
            self._latest.pop(update["user_id"], None)  # no longer in the group's snapshots
        self.send(message)
        if update.get("type") == "closed":
            if self._pending is not None:
                self._pending.cancel()
            self.let_go("outing ended")

    def _push(self) -> None:
        self._pending = None
        positions = sorted(self._latest.values(), key=lambda entry: entry["user_id"])
        self.send(dumps({"type": "group", "members": positions, "at": time.time()}))


class BadFrame(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def parse_frame(frame: str | bytes) -> dict[str, Any]:
    if isinstance(frame, bytes):
        raise BadFrame("send text frames with JSON")
    try:
        message = json.loads(frame)
    except json.JSONDecodeError as exc:
        raise BadFrame(f"not JSON: {exc.msg}") from exc
    if not isinstance(message, dict):
        raise BadFrame("a frame is a JSON object")
    return message


def validation_reason(exc: ValidationError) -> str:
    error = exc.errors()[0]
    return f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"[:160]
