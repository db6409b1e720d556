"""Every metric the dashboard and the alerts read is one the service exports, and the dashboard shows what an
operator needs (request rate, latency percentiles, batch sizes, queue depth, decisions by type, corpus sizes).
The live /metrics of a running service is compared too, in test_prometheus_scrape.py."""

from __future__ import annotations

import pytest
from stack_files import (
    CONTRACT_METRICS,
    alert_rules,
    dashboard_exprs,
    dashboard_panels,
    load_dashboard,
    metric_names_in,
)

# Metrics service/metrics.py added beyond the list that the dashboard or alerts also read.
BEYOND_CONTRACT = {"flipmatch_batch_failures_total", "flipmatch_store_lag_seconds", "flipmatch_store_lag_changes",
                   "flipmatch_store_apply_delay_seconds", "flipmatch_store_applied_sequence",
                   "flipmatch_store_reachable"}


def _used_metrics() -> dict[str, set[str]]:
    used: dict[str, set[str]] = {}
    for where, expr in dashboard_exprs(load_dashboard()):
        for name in metric_names_in(expr):
            used.setdefault(name, set()).add(f"dashboard {where}")
    for rule in alert_rules():
        for name in metric_names_in(rule["expr"]):
            used.setdefault(name, set()).add(f"alert {rule.get('alert') or rule.get('record')}")
    return used


def test_metric_name_extraction():
    expr = ('histogram_quantile(0.99, sum by (le) (rate(flipmatch_request_duration_seconds_bucket'
            '{route!~"/flipmatch_fake"}[5m]))) / flipmatch_batch_size_count + flipmatch_requests_total')
    assert metric_names_in(expr) == {"flipmatch_request_duration_seconds", "flipmatch_batch_size",
                                     "flipmatch_requests_total"}


def test_queries_read_only_exported_metrics(service_metric_names):
    unknown = {name: sorted(where) for name, where in _used_metrics().items() if name not in service_metric_names}
    assert not unknown, f"metrics the service does not export: {unknown}"


def test_service_exports_the_contract_metrics(service_metric_names):
    assert CONTRACT_METRICS <= service_metric_names, sorted(CONTRACT_METRICS - service_metric_names)


def test_dashboard_and_alerts_use_contract_names():
    """Runs without the service: a typo in a contract metric name shows up here first."""
    used = set(_used_metrics())
    assert used, "no flipmatch_ metric found in the dashboard or the alerts"
    assert used - CONTRACT_METRICS <= BEYOND_CONTRACT, sorted(used - CONTRACT_METRICS - BEYOND_CONTRACT)


def _panel_exprs(title_word: str) -> str:
    panels = [p for p in dashboard_panels(load_dashboard()) if title_word.lower() in p["title"].lower()]
    assert panels, f"no panel titled with {title_word!r}"
    return " ".join(t["expr"] for p in panels for t in p.get("targets", []))


@pytest.mark.parametrize(
    ("title_word", "must_contain"),
    [
        ("request rate", ["rate(flipmatch_requests_total"]),
        ("latency percentiles", [f"histogram_quantile({q}, " for q in ("0.5", "0.9", "0.99")]
         + ["flipmatch_request_duration_seconds_bucket"]),
        ("batch size", ["flipmatch_batch_size_bucket", "flipmatch_batch_size_sum", "flipmatch_batch_size_count"]),
        ("batch tokens", ["flipmatch_batch_tokens_bucket"]),
        ("queue depth", ["flipmatch_queue_depth"]),
        ("decisions by outcome", ["sum by (outcome) (rate(flipmatch_decisions_total"]),
        ("corpus entries", ["flipmatch_corpus_entries"]),
        ("corpus vectors", ["flipmatch_corpus_vectors"]),
        ("model", ["flipmatch_model_info"]),
        ("store lag", ["flipmatch_store_lag_seconds", "by (instance)"]),
        ("store apply delay", ["flipmatch_store_apply_delay_seconds_bucket", "by (instance, le)"]),
    ],
)
def test_dashboard_shows(title_word, must_contain):
    exprs = _panel_exprs(title_word)
    for fragment in must_contain:
        assert fragment in exprs, f"panel {title_word!r} lacks {fragment}"
