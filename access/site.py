"""The site file: branches and gates an administrator adds on a single machine.

Gates are configuration (ADR 12): in a cluster they come with the deployment
(``SMARTGYM_ACCESS_GATES``, Helm values). On one machine ``smartgym admin create-branch``
and ``add-gate`` write them to ``<data dir>/access-site.json`` instead, and access reads
that file when ``SMARTGYM_ACCESS_SITE_FILE`` names it (``smartgym up`` does): at start-up,
and every few seconds after, so a gate added while it runs is opened at once. A gate or
branch the environment configures wins over the file's entry of the same id; a gate that
changes in the file is applied at the next start (a running line is never re-wired).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
from collections.abc import Callable, Collection, Iterator
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from access.faces import FaceCache
from access.gates import Gate, SerialLine, build_gates
from access.settings import AccessSettings, BranchConfig, GateConfig
from access.virtualgate import VirtualGate, is_virtual
from common.settings import PlatformSettings

log = logging.getLogger(__name__)

SITE_FILE = "access-site.json"


class SiteFileError(ValueError):
    """The file is unreadable or an addition would make it inconsistent; safe to show."""


class SiteFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    branches: dict[str, BranchConfig] = Field(default_factory=dict)
    gates: list[GateConfig] = Field(default_factory=list)


def read_site(path: Path) -> SiteFile:
    """The file's content; an absent file is an empty site."""
    try:
        raw = path.read_text()
    except FileNotFoundError:
        return SiteFile()
    except OSError as exc:
        raise SiteFileError(f"{path}: {exc.strerror}") from exc
    try:
        return SiteFile.model_validate_json(raw)
    except ValidationError as exc:
        raise SiteFileError(f"{path} is not a valid site file: {exc.errors()[0]['msg']}") from exc


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One writer at a time (two administrators, or a demo beside a person)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with (path.parent / f".{path.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _write(path: Path, site: SiteFile) -> None:
    staging = path.with_suffix(".tmp")
    staging.write_text(json.dumps(site.model_dump(mode="json"), indent=2, sort_keys=True) + "\n")
    os.replace(staging, path)  # a reader never sees half a file


def add_branch(path: Path, *, branch_id: str, config: BranchConfig) -> tuple[BranchConfig, bool]:
    """Add ``branch_id``; returns the stored config and whether it was new. Adding it again
    with the same config changes nothing; with another config it is refused."""
    with _locked(path):
        site = read_site(path)
        existing = site.branches.get(branch_id)
        if existing is not None:
            if existing != config:
                raise SiteFileError(
                    f"branch {branch_id} exists with timezone {existing.timezone} and occupancy limit "
                    f"{existing.occupancy_limit}"
                )
            return existing, False
        site.branches[branch_id] = config
        _write(path, site)
        return config, True


def add_gate(path: Path, *, gate: GateConfig, configured_branches: Collection[str] = ()) -> tuple[GateConfig, bool]:
    """Add ``gate``; returns the stored gate and whether it was new. Its branch must exist
    (in the file or ``configured_branches``); an id already in use with another
    configuration, or a port and channel another gate is wired to, is refused."""
    with _locked(path):
        site = read_site(path)
        if gate.branch_id not in site.branches and gate.branch_id not in configured_branches:
            raise SiteFileError(f"no branch {gate.branch_id}: create it first (smartgym admin create-branch)")
        for other in site.gates:
            if other.gate_id == gate.gate_id:
                if other != gate:
                    raise SiteFileError(f"gate {gate.gate_id} exists with another configuration: {_describe(other)}")
                return other, False
            if other.port == gate.port and other.channel == gate.channel:
                raise SiteFileError(f"gate {other.gate_id} is already wired to {gate.port} channel {gate.channel}")
            if other.port == gate.port and other.driver != gate.driver:
                raise SiteFileError(f"gates on {gate.port} share one driver: {other.gate_id} uses {other.driver}")
        site.gates.append(gate)
        _write(path, site)
        return gate, True


def _describe(gate: GateConfig) -> str:
    return f"branch {gate.branch_id}, direction {gate.direction}, {gate.driver} on {gate.port} channel {gate.channel}"


class SiteWatcher:
    """Tells access what the file added since the last look (cheap when unchanged)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen: tuple[int, int] | None = None

    def changed(self) -> SiteFile | None:
        """The file's content if it changed since the last call, else None."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return None
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp == self._seen:
            return None
        self._seen = stamp
        return read_site(self.path)


def site_file_path(settings: PlatformSettings) -> Path:
    """Where this installation's site file is: ``SMARTGYM_ACCESS_SITE_FILE`` or the data dir's."""
    configured = os.environ.get("SMARTGYM_ACCESS_SITE_FILE")
    return Path(configured) if configured else settings.data_dir / SITE_FILE


class SiteAdditions:
    """Opens the gates the site file gained while access runs (periodic job): each gets
    its driver and line, a ``virtual:`` port its pty peer (never in production), and a
    new branch its face gallery."""

    def __init__(
        self,
        *,
        settings: AccessSettings,
        gates: dict[str, Gate],
        lines: list[SerialLine],
        faces: FaceCache,
        watch_lines: Callable[[list[SerialLine]], None],
    ) -> None:
        if settings.access_site_file is None:
            raise ValueError("no site file configured")
        self._settings = settings
        self._watcher = SiteWatcher(settings.access_site_file)
        self._watcher.changed()  # what is there now was read with the settings
        self._gates = gates
        self._lines = lines
        self._faces = faces
        self._watch_lines = watch_lines
        self.peers: dict[str, VirtualGate] = {}

    async def apply(self) -> None:
        try:
            site = self._watcher.changed()
        except SiteFileError:
            log.exception("site file unreadable; keeping the gates already open")
            return
        if site is None:
            return
        in_use = {line.url for line in self._lines}
        wired: list[GateConfig] = []
        for gate in site.gates:
            if gate.gate_id in self._gates:
                continue
            if is_virtual(gate.port):
                if self._settings.environment == "production":
                    log.error("gate %s: virtual gates are for local use; configure its serial port", gate.gate_id)
                    continue
                peer = self.peers.get(gate.port)
                if peer is None:
                    name = gate.port.partition(":")[2] or gate.gate_id
                    peer = self.peers[gate.port] = VirtualGate(name, protocol=gate.driver).start()
                gate = gate.model_copy(update={"port": peer.path})
            if gate.port in in_use:
                log.warning("gate %s: its line is already open; it is wired at the next start", gate.gate_id)
                continue
            wired.append(gate)
        if not wired:
            return
        built, lines = build_gates(
            wired,
            reconnect_interval_s=self._settings.access_serial_reconnect_s,
            line_timeout_ms=self._settings.access_line_timeout_ms,
            line_retries=self._settings.access_line_retries,
        )
        for line in lines:
            await line.start()
        self._lines.extend(lines)
        self._gates.update(built)
        self._watch_lines(lines)
        for gate in wired:
            await self._faces.add_branch(gate.branch_id)
            log.info("gate %s of branch %s added from the site file", gate.gate_id, gate.branch_id)

    def stop(self) -> None:
        for peer in self.peers.values():
            peer.stop()
