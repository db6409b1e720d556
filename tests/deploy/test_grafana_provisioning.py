"""Grafana provisioning: the datasource the dashboard names exists, and the dashboard JSON is well formed."""

from __future__ import annotations

import re

import yaml
from stack_files import GRAFANA, dashboard_panels, load_dashboard


def _datasources():
    files = sorted((GRAFANA / "provisioning" / "datasources").glob("*.yml"))
    assert files
    return [d for f in files for d in yaml.safe_load(f.read_text())["datasources"]]


def test_datasource_is_prometheus_by_uid():
    (source,) = _datasources()
    assert source["type"] == "prometheus" and source["isDefault"] and source["uid"]


def test_dashboard_provider():
    files = sorted((GRAFANA / "provisioning" / "dashboards").glob("*.yml"))
    assert files
    for f in files:
        doc = yaml.safe_load(f.read_text())
        assert doc["apiVersion"] == 1
        for provider in doc["providers"]:
            assert provider["type"] == "file" and provider["options"]["path"].startswith("/")


def test_dashboard_references_provisioned_datasource():
    uid = _datasources()[0]["uid"]
    dashboard = load_dashboard()
    refs = [p["datasource"] for p in dashboard_panels(dashboard) if "datasource" in p]
    refs += [t["datasource"] for p in dashboard_panels(dashboard) for t in p.get("targets", []) if "datasource" in t]
    refs += [v["datasource"] for v in dashboard["templating"]["list"] if "datasource" in v]
    assert refs
    for ref in refs:
        assert ref == {"type": "prometheus", "uid": uid}


def test_dashboard_structure():
    dashboard = load_dashboard()
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 36
    panels = dashboard_panels(dashboard)
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    cells = set()
    for panel in panels:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        area = {(x, y) for x in range(pos["x"], pos["x"] + pos["w"]) for y in range(pos["y"], pos["y"] + pos["h"])}
        assert not area & cells, f"panel {panel['title']!r} overlaps another"
        cells |= area
        if panel["type"] == "row":
            continue
        targets = panel["targets"]
        assert targets and all(t["expr"].strip() for t in targets), panel["title"]
        assert len({t["refId"] for t in targets}) == len(targets), panel["title"]


def test_dashboard_variables_defined():
    dashboard = load_dashboard()
    defined = {v["name"] for v in dashboard["templating"]["list"]}
    text = " ".join(t["expr"] for p in dashboard_panels(dashboard) for t in p.get("targets", []))
    used = set(re.findall(r"\$(?!__)(\w+)", text))
    assert used <= defined, sorted(used - defined)
