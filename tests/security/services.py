"""Every service built for the security suite: its app as ``smartgym serve`` would build it
(SQLite, in-process bus), with callers of every kind whose tokens it accepts."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from common.migrations import upgrade
from common.security import Role, TokenIssuer
from common.settings import PlatformSettings
from smartgym.registry import spec
from tests.security.route_policy import Caller
from tests.support import tokens
from tests.support.apps import FAST_HASHER
from tests.support.serialgate import SocatPair

BRANCH_A, BRANCH_B = "gangnam", "hongdae"
# An operator's claims signed by a key nobody trusts: every route refuses it as no token.
FORGED_OPERATOR = {
    "authorization": f"Bearer {tokens.signed(tokens.claims(roles=['operator']), key=tokens.other_key())}"
}


@dataclass
class Callers:
    """One identity per kind of caller, and the headers that present it."""

    issuer: TokenIssuer
    ids: dict[Caller, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for caller in Caller:
            if caller is Caller.ANONYMOUS:
                continue
            device = caller in (Caller.DEVICE_A, Caller.DEVICE_B)
            self.ids[caller] = f"device:{uuid.uuid4()}" if device else str(uuid.uuid4())

    def headers(self, caller: Caller) -> dict[str, str]:
        roles, branches = {
            Caller.ANONYMOUS: ((), ()),
            Caller.CUSTOMER: ((Role.CUSTOMER,), ()),
            Caller.HELPER: ((Role.HELPER,), (BRANCH_A,)),
            Caller.OWNER_A: ((Role.BRANCH_OWNER,), (BRANCH_A,)),
            Caller.OWNER_B: ((Role.BRANCH_OWNER,), (BRANCH_B,)),
            Caller.OPERATOR: ((Role.OPERATOR,), ()),
            Caller.DEVICE_A: ((Role.DEVICE,), (BRANCH_A,)),
            Caller.DEVICE_B: ((Role.DEVICE,), (BRANCH_B,)),
        }[caller]
        if caller is Caller.ANONYMOUS:
            return {}
        token = self.issuer.issue(self.ids[caller], roles, branches)
        return {"authorization": f"Bearer {token}"}


@dataclass
class Built:
    app: FastAPI
    # Signs callers' tokens with a key the service trusts; call it once the app started
    # (auth's own key ring is loaded at start-up).
    issuer: Callable[[], TokenIssuer]
    known: dict[str, str] = field(default_factory=dict)


# Listeners beside the HTTP API take a free loopback port, never the production one.
SIDE_LISTENERS: dict[str, dict[str, Any]] = {
    "monitoring": {"monitoring_heartbeat_host": "127.0.0.1", "monitoring_heartbeat_port": 0},
    "running": {"running_live_host": "127.0.0.1", "running_live_port": 0},
}


def settings_for(name: str, tmp_path: Path, **extra: Any) -> PlatformSettings:
    values = {"environment": "test", "data_dir": tmp_path, **SIDE_LISTENERS.get(name, {}), **extra}
    settings = spec(name).settings_type()(**values)
    if spec(name).has_database:
        upgrade(name, settings.database_url(name))
    return settings


@asynccontextmanager
async def built_service(name: str, tmp_path: Path) -> AsyncIterator[Built]:
    """``name``'s app, not started: the caller serves it (ASGI client or loopback socket)."""
    async with AsyncExitStack() as stack:
        if name == "auth":
            from auth.app import create_app as create_auth

            app = create_auth(settings_for(name, tmp_path), hasher=FAST_HASHER)

            def own_keys() -> TokenIssuer:
                # auth verifies only its own keys: sign the callers' tokens with them.
                return TokenIssuer(
                    app.state.keys.active, issuer=tokens.ISSUER, audience=tokens.AUDIENCE, ttl=timedelta(minutes=30)
                )

            yield Built(app, own_keys)
            return
        if name == "access":
            from access.app import create_app as create_access

            pair = SocatPair(tmp_path, "security").start()
            stack.callback(pair.stop)
            gates = [
                {"gate_id": "a-in", "branch_id": BRANCH_A, "driver": "ch340", "port": pair.ours, "channel": 1},
                {"gate_id": "b-in", "branch_id": BRANCH_B, "driver": "ch340", "port": pair.ours, "channel": 2},
            ]
            settings = settings_for(
                name, tmp_path, access_gates=gates, access_facemodel_socket=tmp_path / "absent.sock"
            )
            yield Built(create_access(settings, keys=tokens.key_cache()), long_lived, known={"gate_id": "a-in"})
            return
        if name == "mlops":
            from mlops.app import create_app as create_mlops

            app = create_mlops(settings_for(name, tmp_path), keys=tokens.key_cache())
            # A family that exists, so routes answer past their path validation.
            yield Built(app, long_lived, known={"family": "task_judge", "version": "1.0.0"})
            return
        module = __import__(f"{name}.app", fromlist=["create_app"])
        yield Built(module.create_app(settings_for(name, tmp_path), keys=tokens.key_cache()), long_lived)


def long_lived() -> TokenIssuer:
    return tokens.issuer(ttl=timedelta(minutes=30))
