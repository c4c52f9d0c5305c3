"""Every container of the chart, run here the way the kubelet would run it: the command,
arguments and environment as rendered, the root filesystem read-only, only the pod's
volumes writable (temporary directories standing in, shared by the pod's containers), the
Services' names pointing at this machine. Each must start, become ready and verify a token
that auth signed; a member's journey runs through the gateway."""

from __future__ import annotations

import contextlib
import re
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
import yaml
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from common.migrations import upgrade
from smartgym.registry import SERVICES
from tests.security.route_policy import POLICY
from tests.support import chart, journeys, sandbox
from tests.support.infra import PG_ADMIN_URL, require_postgres, require_rabbitmq, require_tool


@pytest.fixture(autouse=True)
def _bubblewrap() -> None:
    require_tool("bwrap")


VENV_BIN = Path(sys.executable).parent
# What the image's ENV adds to every container (Dockerfile).
IMAGE_ENV = {
    "PATH": f"{VENV_BIN}:/usr/local/bin:/usr/bin:/bin",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONUNBUFFERED": "1",
}
PACK_IN_IMAGE = "/opt/smartgym/models/yunet-sface-1.0.0"


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for item in sockets:
        item.bind(("127.0.0.1", 0))
    ports = [item.getsockname()[1] for item in sockets]
    for item in sockets:
        item.close()
    return ports


def _values(prefix: str, namespace: str) -> dict:
    """The stand-in cluster: this machine's broker and PostgreSQL, free ports."""
    services = yaml.safe_load((chart.CHART / "values.yaml").read_text())["services"]
    names = sorted(services)
    ports = iter(_free_ports(len(names) + 3))
    overrides: dict = {name: {"port": next(ports)} for name in names}
    overrides["access"]["facemodelSidecar"] = {"port": next(ports)}
    overrides["running"]["livePort"] = next(ports)
    overrides["monitoring"]["heartbeat"] = {"port": next(ports), "serviceType": "ClusterIP"}
    return {
        "config": {"SMARTGYM_ENVIRONMENT": "test", "SMARTGYM_BUS_NAMESPACE": namespace, "SMARTGYM_LOG_LEVEL": "INFO"},
        "externals": {
            "rabbitmq": {"hosts": ["127.0.0.1:5672"], "vhost": "", "tls": False},
            "postgresql": {"host": "127.0.0.1", "port": 5432, "databasePrefix": prefix, "sslmode": "disable"},
        },
        "partners": {"cardcheckUrl": "http://127.0.0.1:9/", "smsEndpoint": "http://127.0.0.1:9/"},
        "services": overrides,
    }


def _env(container: chart.Container, secrets: dict[str, str]) -> dict[str, str]:
    """The container's environment as the kubelet builds it, Services resolved to here."""
    env: dict[str, str] = {"HOME": "/var/lib/smartgym"} | IMAGE_ENV
    for variable in container.spec.get("env", []):
        if "value" in variable:
            value = re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), str(variable["value"]))
        elif "secretKeyRef" in variable["valueFrom"]:
            value = secrets[variable["valueFrom"]["secretKeyRef"]["key"]]
        else:
            value = f"{container.workload['metadata']['name']}-0"
        env[variable["name"]] = re.sub(r"://smartgym-[a-z0-9-]+:", "://127.0.0.1:", value)
    return env


CHECKOUT = Path(__file__).resolve().parents[2]


def _mounts(container: chart.Container, volumes: dict[str, Path], pack: Path) -> dict[str, sandbox.Mount]:
    mounts = {PACK_IN_IMAGE: sandbox.Mount(pack, writable=False)}  # what the image holds
    # The image's code is this checkout and its venv: visible read-only even where a pod
    # volume (an emptyDir at /tmp) covers the place the checkout lies, as in a CI clone.
    mounts[str(CHECKOUT)] = sandbox.Mount(CHECKOUT, writable=False)
    for mount in container.spec.get("volumeMounts", []):
        source = container.pod["volumes"]
        volume = next(item for item in source if item["name"] == mount["name"])
        writable = "emptyDir" in volume and not mount.get("readOnly")
        mounts[mount["mountPath"]] = sandbox.Mount(volumes[mount["name"]], writable=writable)
    return mounts


@pytest.fixture
def databases():
    prefix = f"smartgym_t_ro{uuid.uuid4().hex[:6]}_"
    # pre_ping: other tests may restart the server while this one runs.
    engine = create_engine(require_postgres(), isolation_level="AUTOCOMMIT", pool_pre_ping=True)
    names = [f"{prefix}{spec.name}" for spec in SERVICES if spec.manifest.has_database]
    with engine.connect() as connection:
        for name in names:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    yield prefix
    for name in names:
        for attempt in range(3):
            try:
                with engine.connect() as connection:
                    connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                break
            except OperationalError:
                time.sleep(1 + attempt)
    engine.dispose()


def test_every_container_runs_on_a_read_only_root(tmp_path, pack, databases, namespace, broker_cleanup):
    require_rabbitmq()
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(_values(databases, namespace)))
    objects = chart.render([values_file])
    user, password = PG_ADMIN_URL.split("//", 1)[1].split("@", 1)[0].split(":")
    secrets = {
        "broker-username": "guest",
        "broker-password": "guest",
        "database-username": user,
        "database-password": password,
    }

    # One directory per pod volume, shared by the pod's containers; Secret volumes filled.
    pod_volumes: dict[str, dict[str, Path]] = {}
    for obj in objects:
        if obj["kind"] not in chart.WORKLOAD_KINDS:
            continue
        volumes = {}
        for volume in obj["spec"]["template"]["spec"]["volumes"]:
            directory = tmp_path / obj["metadata"]["name"] / volume["name"]
            directory.mkdir(parents=True)
            if "secret" in volume and volume["secret"]["secretName"] == "smartgym-fcm":
                from notification.fcm import ServiceAccount

                ServiceAccount.ephemeral("smartgym-prod", "http://127.0.0.1:9/token").to_file(
                    directory / "service-account.json"
                )
            volumes[volume["name"]] = directory
        pod_volumes[obj["metadata"]["name"]] = volumes

    def run(container: chart.Container, log: Path) -> subprocess.Popen[bytes]:
        mounts = _mounts(container, pod_volumes[container.workload["metadata"]["name"]], pack)
        command = sandbox.bwrap_command(mounts, cwd="/var/lib/smartgym")
        command += [str(VENV_BIN / "smartgym"), *container.spec["args"]]
        return subprocess.Popen(command, env=_env(container, secrets), stdout=log.open("wb"), stderr=subprocess.STDOUT)

    everything = chart.containers(objects)
    # The migration Jobs' work (helm's pre-install hooks), done here in-process: they
    # write nothing but their database, and eight more interpreters would double the cost.
    jobs = [item.service for item in everything if not item.serves]
    assert sorted(jobs) == sorted(spec.name for spec in SERVICES if spec.manifest.has_database)
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    for service in jobs:
        upgrade(service, f"{base}/{databases}{service}")

    # A worker (no HTTP listener) has nothing to probe here; its service's API is.
    serving = [
        (item, tmp_path / f"{item.name.replace('/', '_')}.log")
        for item in everything
        if item.serves and not item.extra_process
    ]
    processes = [(item, log, run(item, log)) for item, log in serving]
    try:
        # Eleven interpreters start at once on a shared machine: a generous bound.
        deadline = time.monotonic() + 360
        for item, log, process in processes:
            port = next(p["containerPort"] for p in item.spec["ports"] if p["name"] in ("http", "facemodel"))
            while True:
                assert process.poll() is None, f"{item.name} exited:\n{log.read_text()[-3000:]}"
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                        break
                assert time.monotonic() < deadline, f"{item.name} never ready:\n{log.read_text()[-3000:]}"
                time.sleep(0.2)

        gateway_port = next(
            p["containerPort"] for item, _, _ in processes if item.service == "gateway" for p in item.spec["ports"]
        )
        member = journeys.signup_login_and_get_welcomed(f"http://127.0.0.1:{gateway_port}", timeout=120)

        # Each service checks the member's token against auth's keys (fetched, and for
        # access remembered in its data directory): a wrong answer would be 401.
        for item, _, _ in processes:
            routes = [
                path
                for (method, path) in POLICY.get(item.service, {})
                if method == "GET"
                and "{" not in path
                and path not in ("/healthz", "/readyz", "/metrics")
                and not path.startswith("/.well-known")
                and path != "/revocations"
            ]
            if not routes:
                continue
            port = next(p["containerPort"] for p in item.spec["ports"] if p["name"] == "http")
            url = f"http://127.0.0.1:{port}{routes[0]}"
            assert httpx.get(url, timeout=10).status_code == 401, url
            answer = httpx.get(url, headers=member["auth"], timeout=10)
            assert answer.status_code not in (401, 500, 503), f"{url}: {answer.status_code} {answer.text[:300]}"
        access_data = pod_volumes["smartgym-access-gangnam-1"]["data"]
        assert (access_data / "access-jwks.json").exists()  # remembered for an auth outage
    finally:
        for _, _, process in processes:
            process.terminate()
        for _, _, process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


def test_the_sandbox_leaves_only_the_volumes_writable(tmp_path):
    volume = tmp_path / "data"
    volume.mkdir()
    image_file = tmp_path / "pack"
    image_file.mkdir()
    mounts = {
        "/var/lib/smartgym": sandbox.Mount(volume, writable=True),
        "/var/run/smartgym": sandbox.Mount(volume, writable=True),  # through the host's /var/run symlink
        PACK_IN_IMAGE: sandbox.Mount(image_file, writable=False),
    }
    script = (
        "touch /var/lib/smartgym/ok && touch /var/run/smartgym/ok2 && ls /opt/smartgym/models/yunet-sface-1.0.0"
        f" && ! touch /etc/smartgym-probe 2>/dev/null && ! touch {chart.ROOT}/probe 2>/dev/null"
        f" && ! touch {PACK_IN_IMAGE}/probe 2>/dev/null && ! mkdir /probe 2>/dev/null"
    )
    result = subprocess.run(
        [*sandbox.bwrap_command(mounts, cwd="/var/lib/smartgym"), "sh", "-c", script],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert (volume / "ok").exists()
    assert (volume / "ok2").exists()
    assert not (chart.ROOT / "probe").exists()
