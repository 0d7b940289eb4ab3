"""The Grafana dashboard and the alert rules use only the metrics the service exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import missing

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "docs" / "grafana-dashboard.json"
ALERTS = ROOT / "docs" / "alerts.yml"
HISTOGRAM = "webhooks_attempt_duration_seconds"
# The contract: names exported on /metrics (webhooks serve, webhooks metrics-server).
METRICS = {
    "webhooks_deliveries_created_total",
    "webhooks_attempts_total",
    "webhooks_deliveries_finished_total",
    HISTOGRAM,
    "webhooks_queue_depth",
    "webhooks_parked",
    "webhooks_overdue",
    "webhooks_open_circuits",
    "webhooks_endpoints_disabled_total",
}
# A histogram is queried through its series, never by its own name.
SERIES = (METRICS - {HISTOGRAM}) | {f"{HISTOGRAM}_{s}" for s in ("bucket", "sum", "count")}
METRIC_NAME = re.compile(r"\bwebhooks_[a-z_]+")


def _family(series: str) -> str:
    return HISTOGRAM if series.startswith(f"{HISTOGRAM}_") else series


def _names(expr: str) -> set[str]:
    return set(METRIC_NAME.findall(expr))


def _panels() -> list[dict[str, Any]]:
    """Every panel, rows and the panels of collapsed rows included."""
    panels = []
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        panels += [panel, *panel.get("panels", [])]
    return panels


def _dashboard_exprs() -> list[str]:
    return [target["expr"] for panel in _panels() for target in panel.get("targets", [])]


def _rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def _rule(name: str) -> dict[str, Any]:
    return next(rule for rule in _rules() if rule["alert"] == name)


def test_the_dashboard_is_importable_with_a_prometheus_data_source():
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "webhooks-overview" and dashboard["title"] == "Webhooks"
    assert dashboard["schemaVersion"] == 39
    assert [(i["name"], i["pluginId"]) for i in dashboard["__inputs"]] == [
        ("DS_PROMETHEUS", "prometheus")
    ]
    variable = next(v for v in dashboard["templating"]["list"] if v["name"] == "datasource")
    assert variable["type"] == "datasource" and variable["query"] == "prometheus"
    rows = [panel["title"] for panel in _panels() if panel["type"] == "row"]
    assert rows == ["Throughput", "Failures", "Latency", "Backlog"]


def test_panel_ids_are_unique():
    ids = [panel["id"] for panel in _panels()]
    assert len(ids) == len(set(ids))


def test_every_panel_queries_only_exported_metrics():
    exprs = _dashboard_exprs()
    assert exprs
    for expr in exprs:
        assert _names(expr), expr
        assert _names(expr) <= SERIES, expr


def test_every_exported_metric_is_on_the_dashboard():
    used = {_family(name) for expr in _dashboard_exprs() for name in _names(expr)}
    assert used == METRICS


def test_every_rule_is_complete():
    rules = _rules()
    assert rules
    for rule in rules:
        assert rule["alert"] and rule["expr"] and rule["for"], rule
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names))


def test_the_required_alerts_are_there():
    overdue = _rule("WebhooksOverdue")
    assert re.search(r"\bwebhooks_overdue\b.*>\s*0\s*$", overdue["expr"].strip())
    assert overdue["for"] == "5m" and overdue["labels"]["severity"] == "critical"
    ratio = _rule("WebhooksHighFailureRatio")["expr"]
    assert 'outcome="failed"' in ratio and "/" in ratio
    assert "> 0)" in ratio or "clamp_min" in ratio, "the denominator is guarded against 0"
    assert "webhooks_queue_depth" in _rule("WebhooksQueueDepthHigh")["expr"]


def test_rules_query_only_exported_metrics():
    for rule in _rules():
        assert _names(rule["expr"]), rule["alert"]
        assert _names(rule["expr"]) <= SERIES, rule["alert"]


def test_promtool_accepts_the_rules():
    promtool = shutil.which("promtool")
    if promtool is None:
        missing("promtool is not installed (Debian's prometheus; .ci/run installs it)")
    result = subprocess.run(
        [promtool, "check", "rules", str(ALERTS)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
