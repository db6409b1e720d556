"""Prometheus config and alert rules through Debian's promtool (apt-get install prometheus; .ci/run does it):
syntax, the alert unit tests in deploy/prometheus/alerts.test.yml, and the dashboard's PromQL."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml
from stack_files import (
    ALERTS,
    ALERTS_TEST,
    PROMETHEUS_CONFIG,
    alert_rules,
    as_plain_promql,
    dashboard_exprs,
    load_dashboard,
)

pytestmark = pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool not on PATH (apt-get install prometheus)"
)

REQUIRED_ALERTS = {"FlipMatchDown", "FlipMatchHighP99Latency", "FlipMatchQueueSaturated", "FlipMatchNoMatchRateSpike"}


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=120)


def test_config_is_valid():
    result = _promtool("check", "config", str(PROMETHEUS_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_are_valid():
    result = _promtool("check", "rules", str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_unit_tests_pass():
    result = _promtool("test", "rules", str(ALERTS_TEST))
    assert result.returncode == 0, result.stdout + result.stderr


def test_required_alerts_present_documented_and_unit_tested():
    rules = alert_rules()
    names = {r["alert"] for r in rules if "alert" in r}
    assert REQUIRED_ALERTS <= names
    tested = {case["alertname"] for t in yaml.safe_load(ALERTS_TEST.read_text())["tests"]
              for case in t.get("alert_rule_test", []) if case.get("exp_alerts")}
    assert names == tested, f"alerts without a firing unit test: {sorted(names - tested)}"
    for rule in rules:
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        assert {"summary", "description", "runbook"} <= set(rule["annotations"]), rule["alert"]


def test_dashboard_queries_parse(tmp_path):
    """Every Grafana query, variables filled in, is valid PromQL (promtool parses it as a recording rule)."""
    exprs = dashboard_exprs(load_dashboard())
    variables = {"instance": ".*", "corpus": ".*"}
    rules = [{"record": f"dashboard:query_{i}", "expr": as_plain_promql(expr, variables)}
             for i, (_, expr) in enumerate(exprs)]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = _promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
