"""``smartgym admin``: the first administrator's commands, run on the installation's machine.

They act on the installation's own databases and files through the services' domain code
(auth's accounts and devices, access's site file), not over the API: the very first
operator cannot get a token from an API that needs one. The events they cause go into
the service's outbox in the same transaction; the running installation's relay publishes
them (or the next start does). Settings are the installation's own (``SMARTGYM_*``, the
data directory ``./var`` by default): run the commands where ``smartgym up`` runs.

Every command is idempotent: a repeat says what already exists and exits 0. Bad input is
refused with a reason and exit code 2, before anything is written.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
import zoneinfo
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from pydantic import TypeAdapter, ValidationError
from pydantic.networks import EmailStr

from common.security import Role
from common.settings import PlatformSettings

ACTOR = "smartgym-admin"
SOURCE = "smartgym admin"
STAFF_ROLES = ("operator", "branch_owner", "helper", "customer")
DEVICE_KINDS = ("gate", "kiosk", "camera", "equipment")
_EMAIL = TypeAdapter(EmailStr)


class Refused(click.UsageError):
    """Bad input: said plainly, exit code 2, nothing written."""


@dataclass(frozen=True)
class Outcome:
    """What a command did: a sentence for a person, a record for a script."""

    message: str
    record: dict[str, Any]


def _report(as_json: bool, outcome: Outcome) -> None:
    click.echo(json.dumps(outcome.record, sort_keys=True, default=str) if as_json else outcome.message)


json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a sentence.")


# -- where things live ------------------------------------------------------------------


def _site_file() -> Path:
    from access.site import site_file_path

    return site_file_path(PlatformSettings())


def known_branches() -> set[str]:
    """Branches of this installation: the site file's and those access is configured with."""
    from access.settings import AccessSettings

    try:
        return set(AccessSettings(access_site_file=_site_file()).served_branches)
    except ValidationError as exc:
        raise click.ClickException(f"the installation's access settings are invalid: {exc.errors()[0]['msg']}") from exc


@dataclass
class Auth:
    """auth's domain services on its own database (no HTTP, no relay: the running auth
    publishes what lands in the outbox)."""

    accounts: Any
    devices: Any


@asynccontextmanager
async def auth_services() -> AsyncIterator[Auth]:
    from auth.devices import DeviceService
    from auth.keys import KeyRing
    from auth.models import Base
    from auth.passwords import default_hasher
    from auth.service import AccountService, AuthPolicy
    from auth.settings import AuthSettings
    from common.kernel import build_kernel
    from common.migrations import upgrade
    from common.security import JwksCache
    from contracts import CATALOG

    settings = AuthSettings()
    # The first administrator may come before the first start.
    await asyncio.to_thread(upgrade, "auth", settings.database_url("auth"))

    async def no_keys() -> dict[str, Any]:
        return {"keys": []}

    kernel = build_kernel(
        "auth", settings, metadata=Base.metadata, catalog=CATALOG, keys=JwksCache(no_keys, min_refresh_interval_s=60)
    )
    keys = KeyRing(
        kernel.db,
        settings.signing_key_secret.get_secret_value().encode(),
        legacy_passphrase=settings.key_encryption_secret.get_secret_value().encode(),
    )
    try:
        yield Auth(
            accounts=AccountService(kernel=kernel, keys=keys, hasher=default_hasher(), policy=AuthPolicy()),
            devices=DeviceService(kernel=kernel, keys=keys),
        )
    finally:
        await kernel.db.dispose()


# -- commands -----------------------------------------------------------------------------


@click.group()
def admin() -> None:
    """Create the first users, branches, gates and devices of this installation."""


def _check_branches(role: str, branches: tuple[str, ...]) -> list[str]:
    if role == "operator" and branches:
        raise Refused("operators act for every branch: leave out --branch")
    if role in ("branch_owner", "helper") and not branches:
        raise Refused(f"a {role} needs --branch (the branch they work for)")
    unknown = sorted(set(branches) - known_branches())
    if unknown:
        raise Refused(f"no branch {', '.join(unknown)}: create it first with `smartgym admin create-branch`")
    return sorted(set(branches))


def _user_record(user: Any, created: bool) -> dict[str, Any]:
    return {
        "id": str(user.id),
        "email": user.email,
        "roles": sorted(user.roles),
        "branches": sorted(user.branches or []),
        "created": created,
    }


def _describe_user(user: Any) -> str:
    branches = f" for {', '.join(sorted(user.branches))}" if user.branches else ""
    return f"{user.email} (id {user.id}): {', '.join(sorted(user.roles))}{branches}"


async def create_user(*, email: str, role: str, branches: tuple[str, ...] | list[str], password: str) -> Outcome:
    """Create a user with a role, or give an existing one the role (password unchanged)."""
    from auth.errors import EmailTaken, WeakPassword

    try:
        email = str(_EMAIL.validate_python(email)).lower()
    except ValidationError as exc:
        raise Refused(f"--email {email!r} is not an email address") from exc
    if role not in STAFF_ROLES:
        raise Refused(f"--role {role!r}: one of {', '.join(STAFF_ROLES)}")
    wanted_branches = _check_branches(role, tuple(branches))
    async with auth_services() as auth:
        user = await auth.accounts.by_email(email)
        if user is None:
            try:
                user = await auth.accounts.register(email=email, phone=None, password=password, source=SOURCE)
            except WeakPassword as exc:
                raise Refused("password " + "; password ".join(exc.problems)) from exc
            except EmailTaken:  # created a moment ago by somebody else: treat as a repeat
                user = await auth.accounts.by_email(email)
            else:
                user = await auth.accounts.assign_roles(
                    actor=ACTOR, user_id=user.id, roles=[Role(role)], branches=wanted_branches, source=SOURCE
                )
                return Outcome(f"created {_describe_user(user)}", _user_record(user, True))
        roles = {Role(item) for item in user.roles} | {Role(role)}
        all_branches = sorted(set(user.branches or []) | set(wanted_branches))
        if roles == {Role(item) for item in user.roles} and all_branches == sorted(user.branches or []):
            return Outcome(f"already exists: {_describe_user(user)}", _user_record(user, False))
        user = await auth.accounts.assign_roles(
            actor=ACTOR, user_id=user.id, roles=sorted(roles), branches=all_branches, source=SOURCE
        )
        return Outcome(f"already existed; now {_describe_user(user)} (password unchanged)", _user_record(user, False))


@admin.command("create-user")
@click.option("--email", required=True, help="The person's sign-in email.")
@click.option("--role", type=click.Choice(STAFF_ROLES), required=True)
@click.option("--branch", "branches", multiple=True, help="Branch the person works for (branch owners, helpers).")
@click.option(
    "--password",
    envvar="SMARTGYM_ADMIN_PASSWORD",
    prompt=True,
    hide_input=True,
    confirmation_prompt=True,
    help="Asked for when not given (env SMARTGYM_ADMIN_PASSWORD); unused if the user exists.",
)
@json_option
def create_user_command(email: str, role: str, branches: tuple[str, ...], password: str, as_json: bool) -> None:
    """Create a user with a role, or give an existing one the role (password unchanged)."""
    _report(as_json, asyncio.run(create_user(email=email, role=role, branches=branches, password=password)))


@admin.command("create-branch")
@click.argument("branch_id")
@click.option("--timezone", default="Asia/Seoul", show_default=True, help="IANA zone of the branch's opening hours.")
@click.option("--occupancy-limit", type=int, default=None, help="Most people inside at once (none: no limit).")
@json_option
def create_branch_command(branch_id: str, timezone: str, occupancy_limit: int | None, as_json: bool) -> None:
    """Create a branch (an id such as gangnam-1) for gates, owners and memberships."""
    _report(as_json, create_branch(branch_id, timezone=timezone, occupancy_limit=occupancy_limit))


def create_branch(branch_id: str, *, timezone: str = "Asia/Seoul", occupancy_limit: int | None = None) -> Outcome:
    from access.settings import IDENTIFIER, BranchConfig
    from access.site import SiteFileError, add_branch

    if not re.fullmatch(IDENTIFIER, branch_id) or len(branch_id) > 64:
        raise Refused(f"branch id {branch_id!r}: use 1-64 letters, digits, '.', '_' or '-'")
    try:
        zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise Refused(f"--timezone {timezone!r} is not an IANA time zone (e.g. Asia/Seoul)") from exc
    try:
        config = BranchConfig(timezone=timezone, occupancy_limit=occupancy_limit)
    except ValidationError as exc:
        raise Refused(f"--occupancy-limit: {exc.errors()[0]['msg']}") from exc
    try:
        stored, created = add_branch(_site_file(), branch_id=branch_id, config=config)
    except SiteFileError as exc:
        raise Refused(str(exc)) from exc
    record = {"branch_id": branch_id, **stored.model_dump(), "created": created}
    limit = f", at most {stored.occupancy_limit} inside" if stored.occupancy_limit else ""
    text = f"branch {branch_id} ({stored.timezone}{limit})"
    return Outcome(f"created {text}" if created else f"already exists: {text}", record)


@admin.command("add-gate")
@click.argument("gate_id")
@click.option("--branch", "branch_id", required=True)
@click.option("--direction", type=click.Choice(["in", "out"]), default="in", show_default=True)
@click.option(
    "--driver",
    type=click.Choice(["line", "ch340"]),
    default="line",
    show_default=True,
    help="line: a controller answering OK/ERR; ch340: a USB relay board.",
)
@click.option(
    "--port",
    default=None,
    help="Serial device (/dev/ttyUSB0) or virtual:NAME for a gate you watch in the console "
    "(default: virtual:<branch>).",
)
@click.option("--channel", type=int, default=None, help="Gate number or relay channel (default: the next free one).")
@click.option("--open-ms", type=int, default=3000, show_default=True)
@click.option(
    "--line-down",
    type=click.Choice(["fail_secure", "fail_safe"]),
    default=None,
    help="When the serial line is down (default: fail_secure for an entry, fail_safe for an exit).",
)
@json_option
def add_gate_command(
    gate_id: str,
    branch_id: str,
    direction: str,
    driver: str,
    port: str | None,
    channel: int | None,
    open_ms: int,
    line_down: str | None,
    as_json: bool,
) -> None:
    """Add a gate to a branch. A running installation opens it within a second."""
    outcome = add_gate(
        gate_id,
        branch_id=branch_id,
        direction=direction,
        driver=driver,
        port=port,
        channel=channel,
        open_ms=open_ms,
        line_down=line_down,
    )
    _report(as_json, outcome)


def add_gate(
    gate_id: str,
    *,
    branch_id: str,
    direction: str = "in",
    driver: str = "line",
    port: str | None = None,
    channel: int | None = None,
    open_ms: int = 3000,
    line_down: str | None = None,
) -> Outcome:
    from access.settings import GateConfig
    from access.site import SiteFileError, read_site
    from access.site import add_gate as add_to_site

    site_file = _site_file()
    port = port or f"virtual:{branch_id}"
    try:
        site = read_site(site_file)
    except SiteFileError as exc:
        raise click.ClickException(str(exc)) from exc
    existing = next((gate for gate in site.gates if gate.gate_id == gate_id), None)
    if channel is None:
        if existing is not None and existing.port == port:
            channel = existing.channel
        else:
            used = {gate.channel for gate in site.gates if gate.port == port}
            channel = next((number for number in range(1, 9) if number not in used), 9)
    try:
        gate = GateConfig(
            gate_id=gate_id,
            branch_id=branch_id,
            direction=direction,
            driver=driver,
            port=port,
            channel=channel,
            open_ms=open_ms,
            # An exit must open whatever happens to the line (nobody is locked in).
            line_down=line_down or ("fail_safe" if direction == "out" else "fail_secure"),
        )
    except ValidationError as exc:
        problem = exc.errors()[0]
        field = ".".join(str(part) for part in problem["loc"])
        message = str(problem["msg"]).removeprefix("Value error, ")
        raise Refused(f"{field}: {message}" if field else message) from exc
    try:
        stored, created = add_to_site(site_file, gate=gate, configured_branches=known_branches())
    except SiteFileError as exc:
        raise Refused(str(exc)) from exc
    text = (
        f"gate {stored.gate_id} ({'entry' if stored.direction == 'in' else 'exit'}) of branch {stored.branch_id} "
        f"on {stored.port} #{stored.channel}"
    )
    record = {**stored.model_dump(), "created": created}
    return Outcome(f"added {text}" if created else f"already exists: {text}", record)


@admin.command("add-device")
@click.argument("name")
@click.option("--branch", "branch_id", required=True)
@click.option("--kind", type=click.Choice(DEVICE_KINDS), default="kiosk", show_default=True)
@click.option("--rotate", is_flag=True, help="If the device exists, issue it a new secret (the old one stops working).")
@json_option
def add_device_command(name: str, branch_id: str, kind: str, rotate: bool, as_json: bool) -> None:
    """Register a kiosk, gate, camera or machine; prints its client secret once."""
    _report(as_json, asyncio.run(add_device(name, branch_id=branch_id, kind=kind, rotate=rotate)))


async def add_device(name: str, *, branch_id: str, kind: str = "kiosk", rotate: bool = False) -> Outcome:
    if not 1 <= len(name) <= 100 or not name.isprintable():
        raise Refused("device name: 1-100 printable characters")
    if branch_id not in known_branches():
        raise Refused(f"no branch {branch_id}: create it first with `smartgym admin create-branch`")
    async with auth_services() as auth:
        device = await auth.devices.find(name=name, branch_id=branch_id)
        if device is not None and device.kind != kind:
            raise Refused(f"device {name} of branch {branch_id} exists as a {device.kind}, not a {kind}")
        if device is not None and not rotate:
            return Outcome(
                f"already exists: {kind} {name} of branch {branch_id} (client id {device.id}); its secret was shown "
                "when it was created; --rotate issues a new one",
                {"client_id": str(device.id), "name": name, "kind": kind, "branch_id": branch_id, "created": False},
            )
        if device is not None:
            credentials = await auth.devices.rotate(actor=ACTOR, device_id=device.id, source=SOURCE)
            verb = "issued a new secret to"
        else:
            credentials = await auth.devices.register(
                actor=ACTOR, name=name, kind=kind, branch_id=branch_id, source=SOURCE
            )
            verb = "created"
    client_id: uuid.UUID = credentials.device_id
    return Outcome(
        f"{verb} {kind} {name} of branch {branch_id}\n"
        f"  client id:     {client_id}\n"
        f"  client secret: {credentials.client_secret}   (shown once: store it on the device now)\n"
        "  the device gets its tokens from POST /api/auth/devices/token with both",
        {
            "client_id": str(client_id),
            "client_secret": credentials.client_secret,
            "name": name,
            "kind": kind,
            "branch_id": branch_id,
            "created": device is None,
        },
    )
