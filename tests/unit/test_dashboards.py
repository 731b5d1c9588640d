"""The Grafana dashboards and their provisioning, read as files (the integration test evaluates
every query on a real Prometheus)."""

from __future__ import annotations

import re

import yaml

from cronbus.streams.metrics import Metrics
from tests.dashboards import DASHBOARDS, GRAFANA, METRIC_NAME, load, panels, queries, variables
from tests.seeds import SEEDS

EXPECTED = {"overview", "job-topic", "schedules", "ingest", "downstream"}


def exposed_names() -> set[str]:
    metrics = Metrics(job_types=SEEDS.names, event_topics=SEEDS.event_topics)
    metrics.downstream_service("api")  # as a processor's client does
    text = metrics.exposition().decode()
    return {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")} | {
        m.group(0) for m in re.finditer(r"^cronbus_[a-z_]+", text, re.MULTILINE)
    }


def test_the_five_dashboards_exist_with_unique_uids():
    assert {p.stem for p in DASHBOARDS} == EXPECTED
    uids = [load(p)["uid"] for p in DASHBOARDS]
    assert len(set(uids)) == len(uids)


def test_every_metric_a_panel_uses_is_declared():
    declared = exposed_names()
    for path in DASHBOARDS:
        for query in queries(load(path)):
            for name in METRIC_NAME.findall(query.expr):
                assert name in declared, f"{query.dashboard} / {query.panel} uses unknown {name}"


def test_every_panel_has_a_query_a_description_and_the_datasource_variable():
    for path in DASHBOARDS:
        board = load(path)
        assert board["templating"]["list"][0]["type"] == "datasource"
        for panel in panels(board):
            assert panel["targets"], panel["title"]
            assert panel["description"], panel["title"]
            assert panel["datasource"]["uid"] == "${datasource}"


def test_the_job_topic_dashboard_has_a_job_type_variable_every_query_uses():
    board = load(GRAFANA / "dashboards" / "job-topic.json")
    assert [v["name"] for v in variables(board)] == ["job_type"]
    for query in queries(board):
        assert "$job_type" in query.expr, query.panel


def test_provisioning_points_at_the_dashboards_and_prometheus():
    datasources = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())
    assert datasources["datasources"][0]["uid"] == "prometheus"
    providers = yaml.safe_load((GRAFANA / "provisioning/dashboards/cronbus.yml").read_text())
    assert providers["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    rules = yaml.safe_load((GRAFANA / "alerts.yml").read_text())
    for rule in rules["groups"][0]["rules"]:
        for name in METRIC_NAME.findall(rule["expr"]):
            assert name in exposed_names(), f"alert {rule['alert']} uses unknown {name}"
