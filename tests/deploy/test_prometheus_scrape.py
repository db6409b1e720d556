"""The real Prometheus (Debian's package) scraping the real service on loopback, with our rule files.

Proves without a Docker engine what the compose stack relies on: the scrape job finds the service (`up == 1`),
request counters move when requests arrive, the rules load and evaluate, and every dashboard query runs.
"""

from __future__ import annotations

import importlib.util
import json
import shutil

import pytest
from live_stack import http, prometheus_config_for, promql, running_prometheus, running_service, scalar, wait_for
from stack_files import (
    CONTRACT_METRICS,
    alert_rules,
    as_plain_promql,
    dashboard_exprs,
    exposition_names,
    load_dashboard,
    metric_names_in,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("prometheus") is None,
                       reason="prometheus not on PATH (apt-get install prometheus; .ci/run installs it)"),
]

TEXTS = ["How do I reset my card PIN?", "What is the fee for a wire transfer?"]


@pytest.fixture(scope="module")
def stack(request, tmp_path_factory):
    for module in ("service.__main__", "service.app"):
        if importlib.util.find_spec(module) is None:  # find, not import: __main__ would start serving
            pytest.skip(f"the service has not landed yet: no {module}")
    model = request.getfixturevalue("tiny_artifact")  # tests/conftest.py
    workdir = tmp_path_factory.mktemp("stack")
    with running_service(model, workdir) as service_url:
        target = service_url.removeprefix("http://")
        with running_prometheus(prometheus_config_for(target), workdir) as prometheus_url:
            yield service_url, prometheus_url


def test_service_is_scraped(stack):
    _, prom = stack
    wait_for(lambda: scalar(prom, 'up{job="flipmatch"}') == 1.0, timeout=30, what='up{job="flipmatch"} == 1')
    info = wait_for(lambda: promql(prom, 'flipmatch_model_info{job="flipmatch"}'), timeout=30,
                    what="flipmatch_model_info scraped")
    assert info[0]["metric"]["device"] == "cpu"


def test_request_counters_increase(stack):
    service, prom = stack
    info_requests = 'sum(flipmatch_requests_total{job="flipmatch", route=~".*/info.*"})'
    wait_for(lambda: scalar(prom, 'up{job="flipmatch"}') == 1.0, timeout=30, what="first scrape")
    before = scalar(prom, info_requests) or 0.0
    for _ in range(5):
        status, body = http("GET", f"{service}/v1/info")
        assert status == 200, body[:500]
    wait_for(lambda: (scalar(prom, info_requests) or 0.0) >= before + 5, timeout=30,
             what=f"{info_requests} grows by 5 from {before}")

    status, body = http("POST", f"{service}/v1/embeddings", {"input": TEXTS})
    assert status == 200, body[:500]
    assert len(json.loads(body)["data"]) == len(TEXTS)
    wait_for(lambda: (scalar(prom, 'sum(flipmatch_requests_total{route=~".*/embeddings.*", status=~"2.."})') or 0)
             >= 1, timeout=30, what="embeddings request counted")
    wait_for(lambda: (scalar(prom, "sum(flipmatch_batch_size_sum)") or 0) >= len(TEXTS), timeout=30,
             what="texts counted in flipmatch_batch_size")
    wait_for(lambda: (scalar(prom, "sum(flipmatch_inference_duration_seconds_count)") or 0) >= 1, timeout=30,
             what="a forward pass counted")


def test_live_metrics_cover_dashboard_and_alerts(stack):
    service, _ = stack
    status, body = http("GET", f"{service}/metrics")
    assert status == 200
    exported = exposition_names(body.decode())
    used = {n for _, e in dashboard_exprs(load_dashboard()) for n in metric_names_in(e)}
    used |= {n for r in alert_rules() for n in metric_names_in(r["expr"])}
    assert used <= exported, f"read by dashboard/alerts, absent from /metrics: {sorted(used - exported)}"
    assert CONTRACT_METRICS <= exported, sorted(CONTRACT_METRICS - exported)


def test_rules_load_and_evaluate(stack):
    _, prom = stack
    expected = {r["alert"] for r in alert_rules()}

    def evaluated():
        status, body = http("GET", f"{prom}/api/v1/rules")
        rules = [r for g in json.loads(body)["data"]["groups"] for r in g["rules"]]
        done = {r["name"] for r in rules if r.get("lastEvaluation", "").startswith("20")}
        return rules if status == 200 and expected <= done else None

    rules = wait_for(evaluated, timeout=30, what="every alert rule evaluated")
    broken = {r["name"]: r.get("lastError") for r in rules if r["health"] != "ok"}
    assert not broken, broken
    firing = {r["name"] for r in rules if r["state"] == "firing"}
    assert "FlipMatchDown" not in firing and "FlipMatchTargetMissing" not in firing


def test_dashboard_queries_run(stack):
    _, prom = stack
    wait_for(lambda: scalar(prom, 'sum(flipmatch_requests_total{job="flipmatch"})'), timeout=30,
             what="requests scraped")
    variables = {"instance": ".*", "corpus": ".*"}
    empty = []
    for where, expr in dashboard_exprs(load_dashboard()):
        if where.startswith("variable"):
            continue
        result = promql(prom, as_plain_promql(expr, variables))  # raises on a query Prometheus rejects
        if not result:
            empty.append(where)
    assert "panel 'Request rate by route'" not in empty
