"""Alert rules and Grafana dashboards: well-formed, covering what operations must know,
and naming only metrics the code really exports (checked against /metrics of a running
``smartgym up``)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import yaml

from smartgym.registry import SERVICES, ports
from tests.support.embedded import free_port_offset, seed_pack, seed_wheel_cache
from tests.support.processes import clean_env, start, stop, wait_healthy
from tests.support.promql import DURATION, PromQLError, exported_family, families_of, metric_names

CHART = Path(__file__).resolve().parents[2] / "charts" / "smartgym"
RULES = CHART / "files" / "prometheus" / "smartgym-rules.yaml"
DASHBOARDS = CHART / "files" / "grafana"
LAYERS = {"edge", "access", "business", "bus", "ai"}


def rules() -> list[dict]:
    document = yaml.safe_load(RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def dashboard_queries() -> dict[str, list[str]]:
    return {
        path.stem: [target["expr"] for panel in json.loads(path.read_text())["panels"] for target in panel["targets"]]
        for path in sorted(DASHBOARDS.glob("*.json"))
    }


def recorded() -> set[str]:
    return {rule["record"] for rule in rules() if "record" in rule}


def test_the_rule_file_is_well_formed():
    document = yaml.safe_load(RULES.read_text())
    names = [group["name"] for group in document["groups"]]
    assert len(names) == len(set(names))
    alerts: list[str] = []
    for rule in rules():
        assert ("alert" in rule) != ("record" in rule), rule
        assert set(rule) <= {"alert", "record", "expr", "for", "labels", "annotations"}, rule
        metric_names(rule["expr"])  # parses, or raises with the reason
        if "for" in rule:
            assert DURATION.match(rule["for"]), rule["for"]
        if "alert" in rule:
            alerts.append(rule["alert"])
            assert rule["labels"]["severity"] in {"warning", "critical"}
            assert {"summary", "description"} <= rule["annotations"].keys()
    assert len(alerts) == len(set(alerts))
    # What operations asked to be woken for.
    wanted = {
        "SmartGymCircuitBreakerOpen",
        "SmartGymParkingLotGrowing",
        "SmartGymOutboxBacklog",
        "SmartGymFaultAlertSLOBurnFast",
        "SmartGymFaultAlertSLOBurnSlow",
        "SmartGymGateLineDown",
        "SmartGymFaceEntrySlow",
    }
    assert wanted <= set(alerts)


def test_one_dashboard_per_layer_every_query_parses():
    queries = dashboard_queries()
    assert set(queries) == LAYERS
    uids = set()
    for path in DASHBOARDS.glob("*.json"):
        board = json.loads(path.read_text())
        uids.add(board["uid"])
        assert board["templating"]["list"][0]["type"] == "datasource"  # no datasource uid baked in
        for panel in board["panels"]:
            assert panel["targets"], panel["title"]
            assert {"h", "w", "x", "y"} <= panel["gridPos"].keys()
    assert len(uids) == len(LAYERS)
    for layer, exprs in queries.items():
        for expr in exprs:
            assert metric_names(expr), f"{layer}: {expr} selects no metric"


def test_the_checker_finds_the_selected_metrics_only():
    expr = (
        'histogram_quantile(0.95, sum by (le, route) (rate(a_seconds_bucket{le=~"1(\\\\.0)?", x!="by"}[5m])))'
        " / on (route) group_left b"
    )
    assert metric_names(expr) == {"a_seconds_bucket", "b"}
    assert exported_family("a_seconds_bucket", {"a_seconds": "histogram"})
    assert exported_family("c_total", {"c": "counter"})
    assert not exported_family("c_bucket", {"c": "counter"})


@pytest.mark.parametrize(
    "expr",
    [
        "rate(smartgym_events_parked_total)",  # a range function without a range
        "sum(rate(x[5m])",  # unclosed
        "frobnicate(x)",  # no such function
        'x{service="a"',  # unclosed matcher
        "x[5q]",  # bad duration
        'x{service~"a"}',  # no such matcher
        'x{le=~"15("}',  # bad regular expression
    ],
)
def test_the_checker_refuses_broken_queries(expr):
    with pytest.raises(PromQLError):
        metric_names(expr)


def test_every_metric_in_rules_and_dashboards_is_exported_by_a_running_stack(tmp_path):
    wanted: dict[str, set[str]] = {}
    for rule in rules():
        for name in metric_names(rule["expr"]) - recorded():
            wanted.setdefault(name, set()).add(f"rule {rule.get('alert') or rule.get('record')}")
    for layer, exprs in dashboard_queries().items():
        for expr in exprs:
            for name in metric_names(expr):
                wanted.setdefault(name, set()).add(f"dashboard {layer}")

    assert len(wanted) > 25  # the rules and the dashboards really were read
    offset = free_port_offset()
    plan = ports(offset)
    seed_wheel_cache(tmp_path)
    seed_pack(tmp_path)  # the pack build is tested elsewhere
    log = tmp_path / "up.log"
    process = start(["up", "--port-offset", str(offset)], env=clean_env(), cwd=tmp_path, log=log)
    families: dict[str, str] = {}
    try:
        wait_healthy(f"http://127.0.0.1:{plan['gateway']}", process, log, timeout=240)
        for service in SERVICES:
            response = httpx.get(f"http://127.0.0.1:{plan[service.name]}/metrics", timeout=10)
            assert response.status_code == 200, f"{service.name}: {response.status_code}"
            families.update(families_of(response.text))
    finally:
        stop(process)
    missing = {name: sorted(users) for name, users in wanted.items() if not exported_family(name, families)}
    assert not missing, f"named but not exported: {missing}"
