"""The Grafana dashboard in assets/grafana names only metrics (and labels) that the
worker and the dashboard servers export, so it shows data the day it is imported."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from am_qadf.fleet.worker_metrics import WorkerMetrics
from dashboard.metrics import DashboardMetrics, metric_names, timed_store

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "assets" / "grafana" / "am-qadf-fleet.json"
_METRIC = re.compile(r"\bamqadf_[a-z0-9_]+")
_BY = re.compile(r"\bby\s*\(([^)]*)\)")
_SELECTOR_LABEL = re.compile(r"[{,]\s*([a-z_]+)\s*(?:=~|!=|!~|=)")


def _exporters() -> tuple[set[str], dict[str, set[str]]]:
    """Sample names of a worker's and a dashboard's registries, and each one's labels
    (every metric touched once, so labelled ones have samples)."""
    from am_qadf.fleet.state_store import InProcessStateStore

    worker = WorkerMetrics()
    for what in ("messages_in", "messages_out", "dead_letters"):
        worker.count(what, "m1", 1)
    worker.alert("m1", "critical")
    worker.batch_seconds.observe(0.01)
    worker.lag.labels(topic="t", partition="0").set(3)
    dash = DashboardMetrics()
    dash.set_sessions({"fleet": 1})
    dash.observe_refresh("fleet", 0.05)
    dash.set_machines_shown("fleet", 4)
    timed_store(InProcessStateStore(), dash).snapshots()
    registries = [worker.registry, dash.registry]
    labels: dict[str, set[str]] = {}
    for registry in registries:
        for family in registry.collect():
            for s in family.samples:
                labels.setdefault(s.name, set()).update(s.labels)
    return metric_names(registries), labels


def _exprs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["expr"]] if isinstance(node.get("expr"), str) else []
        return found + [e for v in node.values() for e in _exprs(v)]
    if isinstance(node, list):
        return [e for v in node for e in _exprs(v)]
    return []


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def test_every_expression_names_only_exported_metrics_and_labels(dashboard) -> None:
    names, labels = _exporters()
    exprs = _exprs(dashboard["panels"])
    assert len(exprs) >= 10
    for expr in exprs:
        used = set(_METRIC.findall(expr))
        assert used, f"no AM-QADF metric in {expr!r}"
        assert used <= names, f"{expr!r} names {sorted(used - names)}, not exported"
        known = set().union(*(labels.get(n, set()) for n in used)) | {"le", "instance", "job"}
        grouped = {x.strip() for g in _BY.findall(expr) for x in g.split(",") if x.strip()}
        selected = set(_SELECTOR_LABEL.findall(expr))
        assert grouped | selected <= known, f"{expr!r} uses labels {grouped | selected - known}"


def test_the_issue_figures_are_all_on_the_dashboard(dashboard) -> None:
    text = " ".join(_exprs(dashboard["panels"]))
    for needed in (
        "rate(amqadf_messages_out_total",  # messages/s per machine
        "amqadf_consumer_lag",  # lag per partition
        "histogram_quantile(0.95, sum by (le) (rate(amqadf_batch_seconds_bucket",
        "amqadf_dead_letters_total",
        "by (severity) (increase(amqadf_alerts_total",
        "amqadf_dashboard_sessions",
    ):
        assert needed in text, needed


def test_panels_use_the_datasource_variable_and_ids_are_unique(dashboard) -> None:
    panels = dashboard["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    for p in panels:
        if p["type"] == "row":
            continue
        assert p["datasource"]["uid"] == "${datasource}", p["title"]
        assert p["targets"], p["title"]
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"datasource", "machine"} <= variables
