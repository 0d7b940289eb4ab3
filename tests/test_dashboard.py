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
    "webhooks_archive_backlog",
    "webhooks_endpoints_disabled_total",
    "webhooks_paced_destinations",
    "webhooks_pace_lowered_total",
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
    archive = _rule("WebhooksArchiveBacklogGrowing")
    assert "webhooks_archive_backlog" in archive["expr"]
    assert archive["for"] == "30m" and archive["labels"]["severity"] == "warning"


def test_the_archive_backlog_is_in_the_backlog_row():
    panels = json.loads(DASHBOARD.read_text())["panels"]
    rows = [n for n, panel in enumerate(panels) if panel["type"] == "row"]
    backlog_row = next(n for n in rows if panels[n]["title"] == "Backlog")
    in_row = panels[backlog_row + 1 : next((n for n in rows if n > backlog_row), len(panels))]
    (panel,) = [
        p
        for p in in_row
        if any("webhooks_archive_backlog" in t["expr"] for t in p.get("targets", []))
    ]
    assert panel["type"] == "timeseries" and panel["title"] == "Archive backlog"
    # Below the row's other panels, overlapping none.
    row_y = panels[backlog_row]["gridPos"]["y"]
    assert panel["gridPos"]["y"] > row_y
    for other in in_row:
        if other is not panel:
            a, b = panel["gridPos"], other["gridPos"]
            assert (
                a["y"] >= b["y"] + b["h"]
                or b["y"] >= a["y"] + a["h"]
                or a["x"] >= b["x"] + b["w"]
                or b["x"] >= a["x"] + a["w"]
            ), (panel["title"], other["title"])


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


ARCHIVE_ALERT = "WebhooksArchiveBacklogGrowing"


def _archive_case(
    backlog: list[float], finished_per_second: list[float], firing: list[int], quiet: list[int]
) -> dict[str, Any]:
    """A promtool unit test of the archive alert over one sample a minute of the backlog
    gauge and of the finished-deliveries counter (rising at the given rates): the alert
    fires at the minutes in ``firing`` and does not at those in ``quiet``."""
    finished, total = [], 0.0
    for rate in finished_per_second:
        finished.append(total)
        total += rate * 60
    labels = f'alertname="{ARCHIVE_ALERT}",alertstate="firing"'
    return {
        "interval": "1m",
        "input_series": [
            {
                "series": 'webhooks_archive_backlog{instance="worker-1"}',
                "values": " ".join(f"{value:g}" for value in backlog),
            },
            {
                "series": 'webhooks_deliveries_finished_total{instance="worker-1",'
                'status="delivered"}',
                "values": " ".join(f"{value:g}" for value in finished),
            },
        ],
        "promql_expr_test": [
            {
                "expr": f"ALERTS{{{labels}}}",
                "eval_time": f"{minute}m",
                "exp_samples": (
                    [{"labels": f'ALERTS{{{labels},severity="warning"}}', "value": 1}]
                    if minute in firing
                    else []
                ),
            }
            for minute in sorted([*firing, *quiet])
        ],
    }


def test_the_archive_alert_fires_on_a_backlog_that_keeps_growing_only(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        missing("promtool is not installed (Debian's prometheus; .ci/run installs it)")
    minutes = range(150)
    # PostgreSQL away from minute 10 to 60, one delivery finishing a second: the backlog
    # (about a minute of finished deliveries, WEBHOOKS_ARCHIVE_AFTER_SECONDS) climbs,
    # passes 10 minutes' worth at minute 20, and the alert fires 30 minutes later; the
    # archivers catch up in a few minutes once it is back.
    away = [60.0 if m < 10 else 60.0 + 60 * (m - 10) if m < 60 else 60.0 for m in minutes]
    # Healthy, while traffic ramps up from 1 to 20 deliveries a second over two hours:
    # the backlog grows for two hours too, but stays a minute's worth.
    rates = [1 + 19 * min(m, 120) / 120 for m in minutes]
    ramp = [60 * rate for rate in rates]
    # PostgreSQL away while nothing finishes: a backlog, but not growing.
    still = [60.0 + 60 * min(m, 15) for m in minutes]
    cases = [
        _archive_case(away, [1.0] * len(minutes), firing=[55, 59], quiet=[15, 30, 45, 75, 140]),
        _archive_case(ramp, rates, firing=[], quiet=[30, 60, 90, 120, 140]),
        _archive_case(still, [1.0] * 15 + [0.0] * 135, firing=[], quiet=[30, 60, 120]),
    ]
    spec = tmp_path / "alerts_test.yml"
    spec.write_text(
        yaml.safe_dump({"rule_files": [str(ALERTS)], "evaluation_interval": "1m", "tests": cases})
    )
    result = subprocess.run(
        [promtool, "test", "rules", str(spec)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
