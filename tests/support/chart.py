"""The Helm chart as a cluster would receive it: rendered by the real helm binary, parsed,
and checked for what would break an install — objects the API server refuses, URLs that
lead nowhere, ports a NetworkPolicy drops, writes under a read-only root.

Shared by the chart tests and ``bench/deploy_chart.py``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import yaml

from smartgym.registry import SERVICES, process

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "smartgym"
PROFILES = CHART / "profiles"
# The oldest Kubernetes minor the chart supports; the objects are checked against its API.
KUBERNETES_VERSION = "1.31.0"
RELEASE = "smartgym"
WORKLOAD_KINDS = ("Deployment", "Job", "StatefulSet", "DaemonSet")
# Where Prometheus runs, as the NetworkPolicies name it (values networkPolicy.metricsNamespace).
SCRAPER_NAMESPACE = "monitoring"
OUTSIDE_ADDRESS = "203.0.113.7"  # a device or a browser on the internet


def helm() -> Path:
    """The helm binary scripts/install put beside this interpreter, else fetched (pinned)."""
    beside = Path(sys.executable).parent / "helm"
    if beside.exists():
        return beside
    from tests.support import testdata

    return testdata.helm()


def profiles() -> dict[str, list[Path]]:
    """Default values plus every profile under charts/smartgym/profiles/."""
    return {"default": []} | {path.stem: [path] for path in sorted(PROFILES.glob("*.yaml"))}


def _values_args(values: list[Path], sets: Mapping[str, str] | None = None) -> list[str]:
    args = [arg for path in values for arg in ("-f", str(path))]
    for key, value in (sets or {}).items():
        args += ["--set-string" if isinstance(value, str) else "--set", f"{key}={value}"]
    return args


def render(values: list[Path], sets: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    result = subprocess.run(
        [str(helm()), "template", RELEASE, str(CHART), *_values_args(values, sets)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if result.returncode != 0:
        raise RuntimeError(f"helm template failed: {result.stderr}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def lint(values: list[Path]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(helm()), "lint", "--strict", str(CHART), *_values_args(values)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


# -- the Kubernetes API's own schemas ------------------------------------------------


@cache
def _validator(kind: str, api_version: str) -> Any:
    """One compiled validator per kind (kubernetes-validate's strict schemas, offline)."""
    import json
    from importlib.resources import files

    import jsonschema
    from referencing import Registry, Resource

    group = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    minor = ".".join(KUBERNETES_VERSION.split(".")[:2])
    base = files("kubernetes_validate") / "kubernetes-json-schema" / f"v{minor}.0-local-strict"
    schema = json.loads((base / f"{kind.lower()}-{group}.json").read_text())
    definitions = json.loads((base / "_definitions.json").read_text())
    registry = Resource.from_contents(definitions) @ (Resource.from_contents(schema) @ Registry())
    return jsonschema.Draft202012Validator(schema, registry=registry)


def schema_errors(objects: list[dict[str, Any]]) -> list[str]:
    errors = []
    for obj in objects:
        try:
            validator = _validator(obj["kind"], obj["apiVersion"])
        except FileNotFoundError:
            errors.append(f"{obj['kind']} {obj['apiVersion']}: no such API in Kubernetes {KUBERNETES_VERSION}")
            continue
        for error in validator.iter_errors(obj):
            where = "/".join(str(part) for part in error.absolute_path)
            errors.append(f"{obj['kind']}/{obj['metadata']['name']} at {where}: {error.message[:200]}")
    return errors


# -- workloads, their containers and environments --------------------------------------


@dataclass(eq=False)
class Container:
    workload: dict[str, Any]
    spec: dict[str, Any]
    env: dict[str, str] = field(default_factory=dict)
    _settings: Any = None

    @property
    def pod(self) -> dict[str, Any]:
        spec: dict[str, Any] = self.workload["spec"]["template"]["spec"]
        return spec

    @property
    def pod_labels(self) -> dict[str, str]:
        labels: dict[str, str] = self.workload["spec"]["template"].get("metadata", {}).get("labels", {})
        return labels

    @property
    def name(self) -> str:
        return f"{self.workload['metadata']['name']}/{self.spec['name']}"

    @property
    def service(self) -> str:
        """The SmartGym service the container runs (`serve NAME` or `migrate NAME`); a
        service's extra process (`serve mlops-worker`) belongs to its service."""
        args = self.spec.get("args", [])
        name = str(args[1]) if len(args) > 1 else ""
        extra = process(name) if name and name not in {known.name for known in SERVICES} else None
        return extra[0].name if extra else name

    @property
    def extra_process(self) -> bool:
        """An extra process of a service (a worker): no HTTP listener of its own."""
        args = self.spec.get("args", [])
        return len(args) > 1 and str(args[1]) != self.service

    @property
    def serves(self) -> bool:
        return bool(self.spec.get("args")) and self.spec["args"][0] == "serve"


def _expand(value: str, env: Mapping[str, str]) -> str:
    """Kubernetes' $(VAR) expansion of earlier variables."""
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)), value)


_CONTAINERS: list[tuple[list[dict[str, Any]], list[Container]]] = []


def containers(objects: list[dict[str, Any]]) -> list[Container]:
    """Every container of every workload (worked out once per render)."""
    for seen, found in _CONTAINERS:
        if seen is objects:
            return found
    found = _containers(objects)
    _CONTAINERS.append((objects, found))
    del _CONTAINERS[:-8]
    return found


def _containers(objects: list[dict[str, Any]], *, secret_value: str = "placeholder") -> list[Container]:
    """Every container of every workload, its environment resolved as the kubelet would:
    ConfigMaps from the render, Secrets' keys as ``secret_value`` (they are not rendered)."""
    config_maps = {obj["metadata"]["name"]: obj.get("data", {}) for obj in objects if obj["kind"] == "ConfigMap"}
    found = []
    for obj in objects:
        if obj["kind"] not in WORKLOAD_KINDS:
            continue
        for spec in obj["spec"]["template"]["spec"]["containers"]:
            env: dict[str, str] = {}
            for source in spec.get("envFrom", []):
                if "configMapRef" in source:
                    env.update(config_maps.get(source["configMapRef"]["name"], {}))
            for variable in spec.get("env", []):
                if "value" in variable:
                    env[variable["name"]] = _expand(str(variable["value"]), env)
                elif "secretKeyRef" in variable.get("valueFrom", {}):
                    env[variable["name"]] = secret_value
                elif "fieldRef" in variable.get("valueFrom", {}):
                    env[variable["name"]] = "pod-name"
            found.append(Container(workload=obj, spec=spec, env=env))
    return found


_ENVIRON_LOCK = __import__("threading").Lock()


@contextlib.contextmanager
def _environ(env: Mapping[str, str]) -> Iterator[None]:
    """The process environment replaced by ``env`` for a moment (settings read it)."""
    with _ENVIRON_LOCK:
        saved = dict(os.environ)
        os.environ.clear()
        os.environ.update(env)
        try:
            yield
        finally:
            os.environ.clear()
            os.environ.update(saved)


def settings_of(container: Container) -> Any:
    """The service's own settings as the container's environment makes them. Production's
    refusals of placeholder secrets are left out: the Secrets are not part of the render."""
    if container._settings is not None:
        return container._settings
    from smartgym.registry import spec

    settings_type = spec(container.service).settings_type()
    env = container.env | {"SMARTGYM_ENVIRONMENT": "test"}
    if "SMARTGYM_BIOMETRIC_SEALING_KEY_ID" in env:
        # The keys themselves are in the service's Secret; the id in force must be among them.
        key = "k" * 43
        env["SMARTGYM_BIOMETRIC_SEALING_KEYS"] = f'{{"{env["SMARTGYM_BIOMETRIC_SEALING_KEY_ID"]}": "{key}"}}'
    with _environ(env):
        container._settings = settings_type()
    return container._settings


# -- URLs the services call --------------------------------------------------------------

_LOOPBACK = {"127.0.0.1", "localhost", "::1", "0.0.0.0"}


def _urls_in(value: Any, where: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str) and re.match(r"^[a-z][a-z0-9+.-]*://", value):
        yield where, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _urls_in(item, f"{where}.{key}")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _urls_in(item, f"{where}[{index}]")


def called_urls(container: Container) -> list[tuple[str, str]]:
    """(setting, URL) for every URL the service is configured to call: the environment's
    and the settings' (a field left at its default counts: that is where it will call)."""
    settings = settings_of(container)
    dumped = settings.model_dump(mode="json")
    return [(f"settings.{where}", url) for where, url in _urls_in(dumped, container.service)]


def _service_ports(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {obj["metadata"]["name"]: obj for obj in objects if obj["kind"] == "Service"}


def _selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return bool(selector) and all(labels.get(key) == value for key, value in selector.items())


def resolve(objects: list[dict[str, Any]], url: str) -> tuple[str, Container | None] | None:
    """Where an in-cluster URL lands: (problem, None) when it does not, (port name, the
    container) when it does; None for a URL outside the release (a partner, a database)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if not host:
        return None  # memory://, file:// and the like: nothing to reach
    if host in _LOOPBACK:
        return f"{url} points at the caller's own pod", None
    if "." in host and not host.endswith(".svc.cluster.local"):
        return None  # another namespace or the outside world
    name = host.split(".")[0]
    service = _service_ports(objects).get(name)
    if service is None:
        return f"{url}: no Service {name!r} in the release", None
    default_port = {"http": 80, "https": 443, "ws": 80, "wss": 443}.get(parts.scheme, 0)
    port = parts.port or default_port
    matches = [item for item in service["spec"]["ports"] if item["port"] == port]
    if not matches:
        return f"{url}: Service {name} has no port {port}", None
    target = matches[0].get("targetPort", port)
    for container in containers(objects):
        if container.workload["kind"] != "Deployment" or not _selects(
            service["spec"]["selector"], container.pod_labels
        ):
            continue
        for declared in container.spec.get("ports", []):
            if target in (declared.get("name"), declared["containerPort"]):
                return declared.get("name", str(declared["containerPort"])), container
    return f"{url}: Service {name} port {port} reaches no container port {target!r}", None


def unresolved_urls(objects: list[dict[str, Any]]) -> list[str]:
    problems = []
    for container in containers(objects):
        if not container.serves:
            continue
        for where, url in called_urls(container):
            resolved = resolve(objects, url)
            if resolved is not None and resolved[1] is None:
                problems.append(f"{container.name} {where}: {resolved[0]}")
    problems += unshared_sockets(objects)
    return problems


def unshared_sockets(objects: list[dict[str, Any]]) -> list[str]:
    """access reaches facemodel over a Unix socket: a container of the same pod must
    serve it, on a volume both mount."""
    problems = []
    everything = containers(objects)
    for container in everything:
        if container.service != "access" or not container.serves:
            continue
        socket = PurePosixPath(str(settings_of(container).access_facemodel_socket))
        peers = [
            other
            for other in everything
            if other.workload is container.workload
            and other.service == "facemodel"
            and PurePosixPath(str(settings_of(other).facemodel_socket)) == socket
        ]
        if not peers:
            problems.append(f"{container.name}: no facemodel in its pod serves {socket}")
            continue
        mine, theirs = _mount_of(container, socket.parent), _mount_of(peers[0], socket.parent)
        if mine is None or theirs is None or mine["name"] != theirs["name"]:
            problems.append(f"{container.name}: {socket} is not on a volume shared with {peers[0].name}")
    return problems


def _mount_of(container: Container, path: PurePosixPath) -> dict[str, Any] | None:
    """The volume mount ``path`` lives on (the deepest mount point above it)."""
    best = None
    for mount in container.spec.get("volumeMounts", []):
        point = PurePosixPath(mount["mountPath"])
        if (path == point or point in path.parents) and (best is None or len(point.parts) > len(best[0].parts)):
            best = (point, mount)
    return best[1] if best else None


# -- NetworkPolicies ---------------------------------------------------------------------


@dataclass(frozen=True)
class Peer:
    """Who opens a connection: a pod of the release, a pod in another namespace, or an
    address outside the cluster."""

    pod_labels: Mapping[str, str] = field(default_factory=dict)
    namespace: str | None = None  # None: the release's own
    address: str | None = None

    def __str__(self) -> str:
        if self.address:
            return self.address
        return f"{self.namespace or 'release'}:{self.pod_labels.get('app.kubernetes.io/component', 'any')}"


def _peer_matches(rule_peer: Mapping[str, Any], peer: Peer) -> bool:
    if "ipBlock" in rule_peer:
        if peer.address is None:
            return False
        block = rule_peer["ipBlock"]
        address = ipaddress.ip_address(peer.address)
        inside = address in ipaddress.ip_network(block["cidr"])
        return inside and not any(address in ipaddress.ip_network(cidr) for cidr in block.get("except", []))
    if peer.address is not None:
        return False
    pods = rule_peer.get("podSelector")
    namespaces = rule_peer.get("namespaceSelector")
    if namespaces is None and peer.namespace is not None:
        return False  # a bare podSelector means the policy's own namespace
    if namespaces is not None:
        wanted = namespaces.get("matchLabels", {})
        namespace_labels = {"kubernetes.io/metadata.name": peer.namespace or RELEASE}
        if not all(namespace_labels.get(key) == value for key, value in wanted.items()):
            return False
    if pods is not None:
        wanted = pods.get("matchLabels", {})
        return all(peer.pod_labels.get(key) == value for key, value in wanted.items())
    return True


def admitted(objects: list[dict[str, Any]], target: Container, port_name: str, port: int, peer: Peer) -> bool:
    policies = [
        obj
        for obj in objects
        if obj["kind"] == "NetworkPolicy"
        and "Ingress" in obj["spec"].get("policyTypes", ["Ingress"])
        and all(
            target.pod_labels.get(key) == value
            for key, value in obj["spec"]["podSelector"].get("matchLabels", {}).items()
        )
    ]
    if not policies:
        return True  # no policy selects the pod: everything is admitted
    for policy in policies:
        for rule in policy["spec"].get("ingress", []):
            ports = rule.get("ports")
            if ports and not any(item.get("port") in (port_name, port) for item in ports):
                continue
            peers = rule.get("from")
            if not peers or any(_peer_matches(item, peer) for item in peers):
                return True
    return False


def unadmitted_ports(objects: list[dict[str, Any]], *, device: str = OUTSIDE_ADDRESS) -> list[str]:
    """Every connection the release needs, checked against its NetworkPolicies: each URL
    a service calls (from the calling pod), Prometheus on every HTTP port, the edge on the
    gateway, devices on the heartbeat listener."""
    problems = []
    everything = [container for container in containers(objects) if container.serves]
    scraper = Peer(pod_labels={"app.kubernetes.io/name": "prometheus"}, namespace=SCRAPER_NAMESPACE)
    outside = Peer(address=OUTSIDE_ADDRESS)
    for container in everything:
        for where, url in called_urls(container):
            resolved = resolve(objects, url)
            if resolved is None or resolved[1] is None:
                continue
            port_name, target = resolved
            if target is None:
                continue
            port = next(item["containerPort"] for item in target.spec["ports"] if item.get("name") == port_name)
            if not admitted(objects, target, port_name, port, Peer(pod_labels=container.pod_labels)):
                problems.append(f"{container.name} -> {target.name}:{port_name} ({where}) is dropped")
        for declared in container.spec.get("ports", []):
            name, port = declared.get("name", ""), declared["containerPort"]
            needed: list[Peer] = []
            if name in ("http", "facemodel"):
                needed.append(scraper)
            if name == "heartbeat":
                needed.append(Peer(address=device))
            if name == "http" and container.service == "gateway":
                needed.append(outside)
            for peer in needed:
                if not admitted(objects, container, name, port, peer):
                    problems.append(f"{peer} -> {container.name}:{name} is dropped")
    return problems


def device_address(values: list[Path]) -> str:
    """An address a device's heartbeat comes from: inside the first network the values
    admit heartbeats from, else anywhere on the internet."""
    networks: list[str] = []
    for path in values:
        networks = (yaml.safe_load(path.read_text()).get("networkPolicy") or {}).get("heartbeatFrom") or networks
    if not networks:
        return OUTSIDE_ADDRESS
    return str(next(ipaddress.ip_network(networks[0]).hosts()))


# -- writes under a read-only root -------------------------------------------------------


def written_paths(container: Container) -> dict[str, PurePosixPath]:
    """What the service writes, by the settings the container runs with."""
    settings = settings_of(container)
    data = PurePosixPath(str(settings.data_dir))
    paths = {"temporary files": PurePosixPath("/tmp"), "data directory": data}
    name = container.service
    if name == "access":
        paths["remembered JWKS"] = data / "access-jwks.json"
        if settings.access_site_file is not None:
            paths["site file"] = PurePosixPath(str(settings.access_site_file))
    if name == "facemodel":
        paths["facemodel socket"] = PurePosixPath(str(settings.facemodel_socket))
    if name == "search" and settings.search_backend == "tantivy":
        paths["search index"] = PurePosixPath(str(settings.index_dir))
    if name == "helper" and settings.helper_photo_store == "directory":
        paths["task photos"] = PurePosixPath(str(settings.photo_dir))
    return paths


def _writable(container: Container, path: PurePosixPath) -> bool:
    mount = _mount_of(container, path)
    if mount is None:
        read_only_root = container.spec.get("securityContext", {}).get("readOnlyRootFilesystem", False)
        return not read_only_root and PurePosixPath(path).is_absolute()
    if mount.get("readOnly"):
        return False
    volume = next(item for item in container.pod["volumes"] if item["name"] == mount["name"])
    return any(kind in volume for kind in ("emptyDir", "persistentVolumeClaim", "ephemeral"))


def unwritable_paths(objects: list[dict[str, Any]]) -> list[str]:
    problems = []
    for container in containers(objects):
        for what, path in written_paths(container).items():
            if not path.is_absolute():
                problems.append(f"{container.name}: {what} at {path} is relative to the read-only working directory")
            elif not _writable(container, path):
                problems.append(f"{container.name}: {what} at {path} is not on a writable volume")
        if container.service == "facemodel" and container.serves:
            pack = PurePosixPath(str(settings_of(container).facemodel_pack))
            if _mount_of(container, pack) is not None:
                problems.append(f"{container.name}: the image's model pack {pack} is hidden under a volume")
    return problems
