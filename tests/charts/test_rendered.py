"""The chart as helm renders it, checked the way an install would fail: objects the API
server refuses, URLs that lead nowhere, ports a NetworkPolicy drops, writes under a
read-only root, Secrets shared between services."""

from __future__ import annotations

import copy
import json
import re

import pytest

from tests.charts.conftest import PROFILE_NAMES
from tests.support import chart

# The names the values schema refuses in plain config/env, applied to what was rendered.
SECRET_NAME = json.loads((chart.CHART / "values.schema.json").read_text())["properties"]["config"]["propertyNames"][
    "not"
]["pattern"]


def test_there_are_three_profiles_beside_the_defaults():
    assert set(PROFILE_NAMES) >= {"default", "single-branch", "chain", "everything"}


@pytest.mark.parametrize("profile", PROFILE_NAMES)
def test_helm_lint_is_clean(profile, profile_files):
    result = chart.lint(profile_files[profile])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("profile", PROFILE_NAMES)
def test_every_object_is_valid_for_the_kubernetes_api(profile, renders):
    assert chart.schema_errors(renders[profile]) == []


@pytest.mark.parametrize("profile", PROFILE_NAMES)
def test_every_url_a_service_calls_reaches_a_service_port(profile, renders):
    assert chart.unresolved_urls(renders[profile]) == []


@pytest.mark.parametrize("profile", PROFILE_NAMES)
def test_network_policies_admit_every_connection_the_release_needs(profile, renders, profile_files):
    objects = renders[profile]
    assert any(obj["kind"] == "NetworkPolicy" for obj in objects)
    assert chart.unadmitted_ports(objects, device=chart.device_address(profile_files[profile])) == []


@pytest.mark.parametrize("profile", PROFILE_NAMES)
def test_every_container_can_write_what_it_writes(profile, renders):
    assert chart.unwritable_paths(renders[profile]) == []


def _without_env(objects, workload, variable):
    changed = copy.deepcopy(objects)
    for obj in changed:
        if obj["metadata"]["name"] == workload and obj["kind"] == "Deployment":
            for container in obj["spec"]["template"]["spec"]["containers"]:
                container["env"] = [item for item in container.get("env", []) if item["name"] != variable]
    return changed


def test_the_checks_catch_what_a_broken_chart_gets_wrong(renders):
    objects = renders["default"]
    # The gateway without running's live URL sends /api/live to its own pod.
    broken = _without_env(objects, "smartgym-gateway", "SMARTGYM_RUNNING_LIVE_URL")
    assert any("running_live_url" in problem and "own pod" in problem for problem in chart.unresolved_urls(broken))
    # access without a data directory writes its remembered keys under the read-only root.
    broken = _without_env(objects, "smartgym-access-gangnam-1", "SMARTGYM_DATA_DIR")
    assert any("remembered JWKS" in problem for problem in chart.unwritable_paths(broken))
    # auth's enrolment URL naming a Service the release does not have.
    broken = copy.deepcopy(objects)
    broken = [
        obj for obj in broken if not (obj["kind"] == "Service" and obj["metadata"]["name"] == "smartgym-facemodel")
    ]
    assert any("facemodel_url" in problem for problem in chart.unresolved_urls(broken))
    # A policy admitting only HTTP drops running's live sockets and the heartbeats.
    broken = copy.deepcopy(objects)
    for obj in broken:
        if obj["kind"] == "NetworkPolicy":
            obj["spec"]["ingress"] = [{"ports": [{"port": "http"}]}]
    dropped = chart.unadmitted_ports(broken)
    assert any(":live" in problem for problem in dropped)
    assert any(":heartbeat" in problem for problem in dropped)
    assert any(":facemodel" in problem for problem in dropped)


@pytest.mark.parametrize("profile", PROFILE_NAMES)
def test_every_container_gets_only_its_own_services_secret(profile, renders):
    for container in chart.containers(renders[profile]):
        spec = container.spec
        refs = {source["secretRef"]["name"] for source in spec.get("envFrom", []) if "secretRef" in source}
        refs |= {
            item["valueFrom"]["secretKeyRef"]["name"]
            for item in spec.get("env", [])
            if "secretKeyRef" in item.get("valueFrom", {})
        }
        service = container.service
        if service == "facemodel":
            assert refs == set(), container.name  # the sidecar never sees access's sealing keys
            continue
        assert len(refs) <= 1, container.name
        for ref in refs:
            workload = container.workload["metadata"]["name"]
            assert ref == f"smartgym-{service.replace('_', '-')}" or ref.endswith(service.replace("_", "-")), (
                container.name,
                ref,
                workload,
            )
        for variable in spec.get("env", []):  # plain values never carry a secret
            if "value" in variable:
                # A URL with credentials is composed from the Secret's keys by the kubelet.
                composed = re.search(r"://\$\([A-Z_]+\):\$\([A-Z_]+\)@", variable["value"])
                assert composed or not re.search(SECRET_NAME, variable["name"]), variable
                assert composed or "@" not in variable["value"], variable


@pytest.mark.parametrize("profile", PROFILE_NAMES)
def test_every_workload_is_locked_down_probed_and_sized(profile, renders):
    for container in chart.containers(renders[profile]):
        names = [variable["name"] for variable in container.spec.get("env", [])]
        assert len(names) == len(set(names)), (container.name, sorted(n for n in names if names.count(n) > 1))
        security = container.spec["securityContext"]
        assert security["readOnlyRootFilesystem"] is True, container.name
        assert security["allowPrivilegeEscalation"] is False, container.name
        assert container.pod["securityContext"]["runAsNonRoot"] is True, container.name
        resources = container.spec["resources"]
        assert {"cpu", "memory"} <= set(resources["requests"])
        assert {"cpu", "memory"} <= set(resources["limits"])
        # A worker has no HTTP listener to probe: a stuck job is bounded by its lease.
        if container.serves and not container.extra_process:
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                assert probe in container.spec, (container.name, probe)


@pytest.mark.parametrize("profile", PROFILE_NAMES)
def test_stateless_services_scale_and_survive_disruption(profile, renders):
    objects = renders[profile]
    deployments = {obj["metadata"]["name"]: obj for obj in objects if obj["kind"] == "Deployment"}
    hpas = {obj["spec"]["scaleTargetRef"]["name"] for obj in objects if obj["kind"] == "HorizontalPodAutoscaler"}
    pdbs = {obj["metadata"]["name"] for obj in objects if obj["kind"] == "PodDisruptionBudget"}
    for name, deployment in deployments.items():
        component = deployment["metadata"]["labels"]["app.kubernetes.io/component"]
        spec = deployment["spec"]
        sharded = any(
            item["name"] == "SMARTGYM_MONITORING_SHARDS"
            for container in spec["template"]["spec"]["containers"]
            for item in container.get("env", [])
        )
        if component in ("access", "monitoring") and not sharded:  # they own devices: one pod, replaced, never scaled
            assert spec["strategy"]["type"] == "Recreate", name
            assert name not in hpas, name
            assert spec.get("replicas", 1) == 1, name
            continue
        assert name in hpas or spec.get("replicas", 0) >= 1, name
        if name in hpas or spec.get("replicas", 0) > 1:
            assert name in pdbs, name
            assert "topologySpreadConstraints" in spec["template"]["spec"], name
    if profile == "default":
        stateless = {"gateway", "auth", "facemodel", "notification", "running", "helper", "branch-owner"}
        assert {f"smartgym-{name}" for name in stateless} <= hpas


@pytest.mark.parametrize("profile", PROFILE_NAMES)
def test_access_and_facemodel_share_a_pod_per_site(profile, renders):
    objects = renders[profile]
    sites = [
        obj
        for obj in objects
        if obj["kind"] == "Deployment" and obj["metadata"]["labels"]["app.kubernetes.io/component"] == "access"
    ]
    assert sites
    for site in sites:
        names = [container["name"] for container in site["spec"]["template"]["spec"]["containers"]]
        assert names == ["access", "facemodel"]
        facemodel = site["spec"]["template"]["spec"]["containers"][1]
        assert facemodel["image"].endswith("-face")
        volumes = {volume["name"]: volume for volume in site["spec"]["template"]["spec"]["volumes"]}
        assert "emptyDir" in volumes["facemodel-socket"]
        for index, device in enumerate(
            mount["mountPath"]
            for mount in site["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
            if mount["name"].startswith("serial-")
        ):
            assert volumes[f"serial-{index}"]["hostPath"] == {"path": device, "type": "CharDevice"}
            assert facemodel["volumeMounts"]
            assert all(m["mountPath"] != device for m in facemodel["volumeMounts"])


def test_the_edge_is_https(renders):
    for profile, objects in renders.items():
        [ingress] = [obj for obj in objects if obj["kind"] == "Ingress"]
        assert ingress["spec"]["tls"], profile
        backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
        assert backend == {"name": "smartgym-gateway", "port": {"name": "http"}}
        if profile != "default":
            assert ingress["metadata"]["annotations"]["cert-manager.io/cluster-issuer"] == "letsencrypt-prod"


def test_a_chain_gets_one_access_pod_and_service_per_site(renders):
    objects = renders["chain"]
    services = {obj["metadata"]["name"] for obj in objects if obj["kind"] == "Service"}
    assert {"smartgym-access-gangnam", "smartgym-access-hongdae", "smartgym-access-jamsil"} <= services
    [jamsil] = [
        obj for obj in objects if obj["kind"] == "Deployment" and obj["metadata"]["name"] == "smartgym-access-jamsil"
    ]
    access = jamsil["spec"]["template"]["spec"]["containers"][0]
    assert access["resources"]["limits"]["squat.ai/serial"] == 1  # the device plugin's resource


def test_helm_refuses_a_search_backend_without_its_cluster():
    with pytest.raises(RuntimeError, match=r"externals\.elasticsearch\.url"):
        chart.render([], sets={"services.search.backend": "elasticsearch"})


def test_monitoring_sharded_over_replicas_names_each_replica_and_spreads():
    objects = chart.render(
        [chart.CHART / "values.yaml"], {"services.monitoring.replicas": 3, "services.monitoring.shards": 64}
    )
    deployment = next(
        obj for obj in objects if obj["kind"] == "Deployment" and obj["metadata"]["name"] == "smartgym-monitoring"
    )
    spec = deployment["spec"]
    env = {item["name"]: item for item in spec["template"]["spec"]["containers"][0]["env"]}
    assert spec["replicas"] == 3
    assert env["SMARTGYM_MONITORING_SHARDS"]["value"] == "64"
    assert env["SMARTGYM_MONITORING_REPLICA_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert spec.get("strategy", {}).get("type") != "Recreate"  # the leases keep one watcher per device
    assert "topologySpreadConstraints" in spec["template"]["spec"]
    assert any(
        obj["kind"] == "PodDisruptionBudget" and obj["metadata"]["name"] == "smartgym-monitoring" for obj in objects
    )
    assert chart.schema_errors(objects) == []
