"""The chart's values: validated against its schema, linted, consistent with the code's
port plan, and refusing secrets outside the Secrets."""

from __future__ import annotations

import copy
import importlib
import json
import subprocess
import sys
import typing
from pathlib import Path

import jsonschema
import pytest
import yaml
from pydantic import SecretStr

from smartgym.registry import PORTS, SERVICES

CHART = Path(__file__).resolve().parents[2] / "charts" / "smartgym"


def tool(name: str) -> str:
    """A console script of this environment (the venv need not be on PATH)."""
    return str(Path(sys.executable).parent / name)


def values() -> dict:
    return yaml.safe_load((CHART / "values.yaml").read_text())


def schema() -> dict:
    return json.loads((CHART / "values.schema.json").read_text())


VALIDATOR = jsonschema.Draft202012Validator(schema())


def test_values_and_profiles_match_the_schema():
    VALIDATOR.validate(values())
    for profile in (CHART / "profiles").glob("*.yaml"):
        merged = values()
        for key, value in yaml.safe_load(profile.read_text()).items():
            merged[key] = value  # the schema is checked per key; helm merges deeper
        VALIDATOR.validate(merged)


def test_schema_rejects_what_an_operator_might_mistype():
    broken = values()
    broken["services"]["gateway"]["replicas"] = "three"
    with pytest.raises(jsonschema.ValidationError):
        VALIDATOR.validate(broken)
    broken = values()
    broken["services"]["kitchen"] = broken["services"]["auth"]
    with pytest.raises(jsonschema.ValidationError):
        VALIDATOR.validate(broken)
    broken = values()
    broken["services"]["access"]["sites"][0]["gates"] = [
        {"gate_id": "front-in", "branch_id": "gangnam", "driver": "usb-magic", "port": "/dev/ttyUSB0"}
    ]
    with pytest.raises(jsonschema.ValidationError):
        VALIDATOR.validate(broken)
    broken = values()
    broken["securityContext"]["readOnlyRootFilesystem"] = False
    with pytest.raises(jsonschema.ValidationError):
        VALIDATOR.validate(broken)


def _settings_types():
    return {spec.name: spec.settings_type() for spec in SERVICES}


def _is_secret(annotation) -> bool:
    if annotation is SecretStr:
        return True
    return any(_is_secret(arg) for arg in typing.get_args(annotation))


def test_schema_refuses_every_secret_setting_in_plain_config_and_env():
    secret, plain = set(), set()
    for settings_type in _settings_types().values():
        for name, field in settings_type.model_fields.items():
            variable = f"SMARTGYM_{name.upper()}"
            (secret if _is_secret(field.annotation) else plain).add(variable)
    # Settings that are not SecretStr but carry credentials in their value.
    secret |= {
        "SMARTGYM_BROKER_URL",
        "SMARTGYM_DATABASE_URLS",
        "SMARTGYM_DATABASE_URL_TEMPLATE",
        "SMARTGYM_AUTH_DATABASE_URL",
        "SMARTGYM_GATEWAY_RATE_LIMIT_STORAGE",
    }
    plain -= secret
    assert "SMARTGYM_SIGNING_KEY_SECRET" in secret
    assert "SMARTGYM_SMS_AUTH_TOKEN" in secret
    base = values()
    for variable in sorted(secret):
        for where in ("config", "env"):
            broken = copy.deepcopy(base)
            target = broken["config"] if where == "config" else broken["services"]["auth"]["env"]
            target[variable] = "s3cr3t-value"
            assert not VALIDATOR.is_valid(broken), (where, variable)
    allowed = values()
    allowed["config"] |= {variable: "1" for variable in plain}
    VALIDATOR.validate(allowed)


@pytest.mark.parametrize(
    "url",
    ["postgresql://smartgym:hunter2@db:5432/x", "amqps://user:pw@rabbit:5671/", "https://token@api.example.com/"],
)
def test_schema_refuses_urls_with_credentials_anywhere_plain(url):
    broken = values()
    broken["services"]["search"]["env"]["SMARTGYM_SEARCH_LLM_URL"] = url
    with pytest.raises(jsonschema.ValidationError):
        VALIDATOR.validate(broken)
    broken = values()
    broken["externals"]["elasticsearch"]["url"] = url
    with pytest.raises(jsonschema.ValidationError):
        VALIDATOR.validate(broken)


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
            "{extends: relaxed, rules: {line-length: {max: 130}}}",
            str(CHART / "values.yaml"),
            str(CHART / "Chart.yaml"),
            *map(str, sorted((CHART / "profiles").glob("*.yaml"))),
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
    assert values()["services"]["access"]["facemodelSidecar"]["port"] == PORTS["facemodel"]
    assert values()["services"]["running"]["livePort"] == PORTS["running_live"]
    assert {spec.name for spec in SERVICES} <= set(values()["services"])


def test_gates_and_routes_in_values_are_what_the_services_read():
    from access.settings import GateConfig
    from gateway.settings import RouteConfig

    for profile in (CHART / "profiles").glob("*.yaml"):
        data = yaml.safe_load(profile.read_text())
        for site in data.get("services", {}).get("access", {}).get("sites", []):
            for gate in site.get("gates", []):
                GateConfig.model_validate(gate)
        for route in data.get("gatewayRoutes", []):
            RouteConfig.model_validate(route)
