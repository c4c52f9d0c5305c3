"""access's settings beyond the platform's: the site it runs at, its gates and branches.

Gates are configuration, not data: each names the serial device the Helm chart passes into
the pod, so adding a gate is a deployment change reviewed like one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from common.sealing import BiometricSealingSettings

IDENTIFIER = r"^[A-Za-z0-9._-]+$"


class GateConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    gate_id: str = Field(
        min_length=1, max_length=64, pattern=IDENTIFIER, description="The gate's name in the API, logs and events."
    )
    branch_id: str = Field(
        min_length=1, max_length=64, pattern=IDENTIFIER, description="Branch the gate lets members into."
    )
    direction: Literal["in", "out"] = Field(
        default="in", description="in: entry gate; out: exit gate (anti-passback counts both)."
    )
    # ch340: the common USB relay boards (no acknowledgement); line: a controller that
    # answers each command with OK / ERR <code>.
    driver: Literal["ch340", "line"] = Field(
        description="ch340: USB relay boards (4-byte frames, no answer); line: a controller answering "
        "`OPEN <gate> <ms>` with OK / ERR <code>."
    )
    port: str = Field(
        min_length=1,
        max_length=300,
        description=(
            "Serial device path or pyserial URL (/dev/ttyUSB0, rfc2217://host:port, socket://host:port); "
            "`virtual:<name>` in `smartgym up` is a pty with a gate stand-in that logs every OPEN/CLOSE."
        ),
    )
    baudrate: int = Field(default=9600, ge=1200, le=921_600, description="Serial speed.")
    channel: int = Field(default=1, ge=1, le=8, description="Relay channel (ch340) or gate number (line).")
    open_ms: int = Field(
        default=3000, ge=100, le=30_000, description="How long the door stays open per decision, milliseconds."
    )
    anti_passback: bool = Field(default=True, description="Refuse a second entry before an exit.")
    # When the serial line is down: fail_secure keeps the door locked and refuses entry;
    # fail_safe is a lock that releases without control, so the decision still stands.
    # Entry gates default to fail_secure; exit gates are always fail_safe (nobody is
    # locked in by a platform outage; docs/adr/0017-egress-and-fail-safe-exits.md).
    line_down: Literal["fail_secure", "fail_safe"] = Field(
        default="fail_secure",
        description=(
            "With the serial line down: fail_secure keeps the door locked and refuses entry; fail_safe is"
            " a lock that releases without control, so the decision still stands. Exit gates are always"
            " fail_safe."
        ),
    )
    door_contact: bool = Field(
        default=False,
        description=(
            "The controller reports the door contact (`DOOR <gate> OPEN`): a granted entry is confirmed by the"
            " door opening, else it is logged commanded_unconfirmed and the member is not counted inside."
        ),
    )
    door_confirm_grace_ms: int = Field(
        default=2000,
        ge=0,
        le=30_000,
        description="How long after open_ms a door contact may still confirm an entry, milliseconds.",
    )

    @model_validator(mode="before")
    @classmethod
    def _exits_fail_safe_by_default(cls, data: object) -> object:
        if isinstance(data, dict) and data.get("direction") == "out" and "line_down" not in data:
            return {**data, "line_down": "fail_safe"}
        return data

    @model_validator(mode="after")
    def _egress_is_never_blocked(self) -> Self:
        if self.direction == "out" and self.line_down == "fail_secure":
            raise ValueError(f"exit gate {self.gate_id} must be fail_safe: a platform outage never blocks egress")
        if self.door_contact and self.driver != "line":
            raise ValueError(f"gate {self.gate_id}: a door contact needs the line driver (relay boards cannot report)")
        return self


class BranchConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    timezone: str = Field(default="Asia/Seoul", description="The branch's time zone (membership access hours).")
    occupancy_limit: int | None = Field(
        default=None, ge=1, le=10_000, description="Most members inside at once; unset = no limit."
    )
    # active: the kiosk sends a burst of 2-4 frames of a small head turn it asks for, and a
    # still picture is refused (docs/adr/0026); off: one frame decides.
    liveness: Literal["off", "active"] = Field(
        default="off", description="active: face entry needs a burst of a head turn (a still photo is refused)."
    )


class AccessSettings(BiometricSealingSettings):
    # One access deployment per site (usually a branch); it gets its own queue and database.
    access_site: str = Field(
        default="main",
        min_length=1,
        max_length=64,
        pattern=IDENTIFIER,
        description="The site this access deployment serves (usually a branch); names its queue.",
    )
    access_gates: list[GateConfig] = Field(
        default_factory=list,
        description=(
            'The gates of this site as JSON, e.g. [{"gate_id": "front-door", "branch_id": "main", '
            '"driver": "line", "port": "/dev/ttyUSB0"}] (see GateConfig below). `smartgym up` without gates '
            "runs one virtual gate."
        ),
    )
    access_branches: dict[str, BranchConfig] = Field(
        default_factory=dict,
        description='Per-branch rules as JSON: {"main": {"timezone": "Asia/Seoul", "occupancy_limit": 80}}.',
    )
    access_facemodel_socket: Path = Field(
        default=Path("var/run/facemodel.sock"),
        description="facemodel's Unix socket (set by `smartgym up` to facemodel's own).",
    )
    access_facemodel_timeout_s: float = Field(
        default=3.0, gt=0, le=30, description="Timeout of one call to facemodel, seconds."
    )
    # Members of other branches pre-fetched into each branch gallery, by visit score.
    access_prefetch_members: int = Field(
        default=10_000,
        ge=0,
        le=1_000_000,
        description="Members of other branches pre-fetched into each branch gallery, by visit score.",
    )
    access_prefetch_refresh_s: float = Field(default=600.0, gt=0, description="Seconds between pre-fetch refreshes.")
    # Visits halve in weight over this many days when ranking members for pre-fetch.
    access_visit_half_life_days: float = Field(
        default=14.0, gt=0, description="Days over which a visit halves in weight when ranking members for pre-fetch."
    )
    # Below the threshold by less than this: "look at the camera again", not "unknown".
    access_near_miss_margin: float = Field(
        default=0.08,
        ge=0,
        le=1,
        description="Below the match threshold by less than this: 'look at the camera again', not 'unknown'.",
    )
    # Somebody inside longer than this probably left without badging out (tailgating out).
    access_presence_expiry_h: float = Field(
        default=12.0,
        gt=0,
        description="Hours after which a member still counted inside is assumed gone (left without badging out).",
    )
    access_serial_reconnect_s: float = Field(
        default=1.0, gt=0, le=60, description="Seconds between attempts to reopen a serial line that went down."
    )
    access_line_timeout_ms: int = Field(
        default=500,
        ge=20,
        le=10_000,
        description="Line protocol: how long to wait for a controller's answer, milliseconds.",
    )
    access_line_retries: int = Field(
        default=2, ge=0, le=10, description="Line protocol: extra attempts after no answer or ERR."
    )
    access_idempotency_ttl_s: float = Field(
        default=600.0,
        ge=1,
        le=86_400,
        description="How long a gate request's Idempotency-Key answers retries with the first decision, seconds.",
    )
    # Camera frames are bigger than JSON bodies.
    max_body_bytes: int = Field(default=6 * 1024 * 1024, ge=1024, description="Largest request body (camera frames).")
    access_site_file: Path | None = Field(
        default=None,
        description=(
            "Branches and gates added with `smartgym admin` on a single machine (JSON, see access.site); "
            "read at start and watched while running. `smartgym up` sets it to <data dir>/access-site.json."
        ),
    )

    access_chain_gallery: bool = Field(
        default=True,
        description=(
            "Keep every stored face vector in facemodel too (the chain gallery), so a face outside the "
            "branch gallery is found by one scan in memory; off: such a face is looked up by reading and "
            "decrypting the whole store (seconds at 100k vectors), which saves facemodel the memory."
        ),
    )
    # How often facemodel's galleries are checked against what access holds (erasures
    # facemodel missed while away are applied sooner, at the next gallery check).
    access_face_reconcile_s: float = Field(
        default=300.0, gt=0, description="How often facemodel's galleries are reconciled with access's store, seconds."
    )

    @model_validator(mode="after")
    def _add_the_site_file(self) -> Self:
        if self.access_site_file is None:
            return self
        from access.site import read_site  # the site file's shapes are these settings'

        site = read_site(self.access_site_file)
        configured = {gate.gate_id for gate in self.access_gates}
        gates = [*self.access_gates, *(gate for gate in site.gates if gate.gate_id not in configured)]
        object.__setattr__(self, "access_gates", gates)
        object.__setattr__(self, "access_branches", {**site.branches, **self.access_branches})
        return self

    @model_validator(mode="after")
    def _gates_are_consistent(self) -> Self:
        seen: set[str] = set()
        wired: dict[tuple[str, int], str] = {}
        for gate in self.access_gates:
            if gate.gate_id in seen:
                raise ValueError(f"gate {gate.gate_id} is configured twice")
            seen.add(gate.gate_id)
            other = wired.get((gate.port, gate.channel))
            if other is not None:
                raise ValueError(f"gates {other} and {gate.gate_id} share {gate.port} channel {gate.channel}")
            wired[(gate.port, gate.channel)] = gate.gate_id
        return self

    def branch(self, branch_id: str) -> BranchConfig:
        return self.access_branches.get(branch_id, BranchConfig())

    @property
    def served_branches(self) -> list[str]:
        return sorted({gate.branch_id for gate in self.access_gates} | set(self.access_branches))
