"""The Grafana dashboards and their provisioning, read as files (the integration test evaluates
every query on a real Prometheus)."""

from __future__ import annotations

import re

import yaml

from cronbus.streams.metrics import DEBOUNCE_OUTCOMES, PUBSUB_TOPIC, Metrics
from tests.dashboards import (
    DASHBOARDS,
    GRAFANA,
    METRIC_NAME,
    SELECTOR,
    load,
    panels,
    queries,
    variables,
)
from tests.seeds import SEEDS

EXPECTED = {"overview", "job-topic", "schedules", "ingest", "downstream"}


def exposed_names() -> set[str]:
    metrics = Metrics(job_types=SEEDS.names, event_topics=SEEDS.event_topics)
    metrics.downstream_service("api")  # as a processor's client does
    assert metrics.bridge  # as the bridge role does
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


def test_the_job_topic_dashboard_has_a_job_type_variable_with_all_every_query_uses():
    board = load(GRAFANA / "dashboards" / "job-topic.json")
    assert [v["name"] for v in variables(board)] == ["role", "instance", "job_type"]
    job_type = variables(board)[-1]
    assert job_type["includeAll"] and job_type["allValue"] == ".*"
    for query in queries(board):
        # a regex match, so All (.*) selects every job type
        assert 'job_type=~"$job_type"' in query.expr or "($job_type)" in query.expr, query.panel
        assert 'job_type="$job_type"' not in query.expr, query.panel


def test_every_dashboard_filters_every_query_by_role_and_instance_with_all():
    for path in DASHBOARDS:
        board = load(path)
        found = {v["name"]: v for v in variables(board)}
        assert {"role", "instance"} <= set(found), path.name
        for name in ("role", "instance"):
            assert found[name]["includeAll"] and found[name]["allValue"] == ".*", (path.name, name)
        assert found["role"]["query"]["query"] == 'label_values(up{job="cronbus"}, role)'
        for query in queries(board):
            for selector in SELECTOR.finditer(query.expr):
                matchers = selector.group(2) or ""
                assert 'role=~"$role"' in matchers and 'instance=~"$instance"' in matchers, \
                    f"{query.dashboard} / {query.panel}: {selector.group(0)} is not filtered"


def query_kind(expr: str) -> str:
    """What a query measures, which decides its panel's unit."""
    if "histogram_quantile(" in expr:
        return "duration"
    if " / " in expr and re.search(r"_sum\b", expr) and re.search(r"_count\b", expr):
        return "duration"  # a mean: the rate of a histogram's sum over its count's
    if " / " in expr:
        return "ratio"
    if "increase(" in expr:
        return "count"
    if "rate(" in expr:
        return "calls" if "cronbus_downstream_request_seconds_count" in expr else "rate"
    return "gauge"


UNITS = {"duration": {"s"}, "ratio": {"percentunit"}, "count": {"short", "none"},
         "rate": {"ops"}, "calls": {"reqps"}, "gauge": {"short", "none"}}
# the window an increase() counts over, as its panel's title must name it
WINDOW_TITLES = {"1h": "(last 1h)", "5m": "per 5 min", "$__range": "(time range)"}


def test_query_kinds_are_told_apart():
    assert query_kind("sum(rate(cronbus_jobs_retried_total{a=\"b\"}[5m]))") == "rate"
    assert query_kind("sum(rate(cronbus_downstream_request_seconds_count[5m]))") == "calls"
    assert query_kind("sum(increase(cronbus_alerts_total[1h]))") == "count"
    assert query_kind("histogram_quantile(0.5, sum by (le) (rate(x_bucket[5m])))") == "duration"
    assert query_kind("sum(rate(x_sum{a=\"b\"}[5m])) / sum(rate(x_count[5m]))") == "duration"
    assert query_kind("sum(rate(x_total{o=\"a\"}[5m])) / clamp_min(sum(rate(x_total[5m])), 1)") \
        == "ratio"
    assert query_kind("max by (service) (cronbus_breaker_state)") == "gauge"


def test_every_panel_has_the_unit_of_what_its_queries_measure():
    for path in DASHBOARDS:
        board = load(path)
        for panel in panels(board):
            unit = panel["fieldConfig"]["defaults"].get("unit")
            for target in panel["targets"]:
                kind = query_kind(target["expr"])
                assert unit in UNITS[kind], \
                    f"{board['title']} / {panel['title']}: a {kind} shown as {unit!r}, not {UNITS[kind]}"
                if kind == "count":  # rare events as counts in a window the title names
                    for window in re.findall(r"increase\([^[]*\[([^]]+)\]", target["expr"]):
                        assert WINDOW_TITLES[window] in panel["title"], (panel["title"], window)


def test_the_suppression_ratio_is_a_share_of_every_debounce_outcome_so_within_0_and_1():
    board = load(GRAFANA / "dashboards" / "ingest.json")
    [panel] = [p for p in panels(board) if p["title"] == "Suppression ratio"]
    [expr] = [t["expr"] for t in panel["targets"]]
    numerator, denominator = expr.split(" / ")
    part = [set(m.split("|")) for m in re.findall(r'outcome=~"([^"]+)"', numerator)]
    whole = [set(m.split("|")) for m in re.findall(r'outcome=~"([^"]+)"', denominator)]
    assert len(part) == len(whole) == 1
    # each event counts once in exactly one outcome: the part of the whole is at most all of it
    assert whole[0] == set(DEBOUNCE_OUTCOMES)
    assert part[0] == {"joined", "suppressed"} < whole[0]
    assert panel["fieldConfig"]["defaults"]["unit"] == "percentunit"
    assert (panel["fieldConfig"]["defaults"]["min"], panel["fieldConfig"]["defaults"]["max"]) == (0, 1)


RETRY_TOPIC = "jobs.invoice-generation.retry.5s"


def test_lag_panels_show_a_retry_topic_only_while_records_wait_on_it():
    """Every selector of the lag that could match a retry topic is kept only where it is > 0."""
    for path in DASHBOARDS:
        for query in queries(load(path)):
            expr = query.substituted({"job_type": ".*", "role": ".*", "instance": ".*"})
            for selector in SELECTOR.finditer(expr):
                if selector.group(1) != "cronbus_consumer_lag":
                    continue
                if not matches(selector.group(2) or "", "topic", RETRY_TOPIC):
                    continue
                rest = expr[selector.end():]
                assert re.match(r"\)*\s*>\s*0", rest), \
                    f"{query.dashboard} / {query.panel} shows idle retry topics: {query.expr}"


def matches(matchers: str, label: str, value: str) -> bool:
    """Whether a selector's matchers on ``label`` (=, !=, =~, !~) let ``value`` through."""
    for op, pattern in re.findall(rf'\b{label}\s*(=~|!~|!=|=)\s*"([^"]*)"', matchers):
        pattern = pattern.replace("\\\\", "\\")
        hit = re.fullmatch(pattern, value) is not None if "~" in op else pattern == value
        if hit == op.startswith("!"):
            return False
    return True


def test_the_bridge_metrics_exist_only_on_a_worker_running_the_bridge():
    """A worker without the bridge exports no cronbus_bridge_* (else the bridge-down alert
    fires on every deployment without a bridge); the bridge's rejections are invalid events."""
    metrics = Metrics(job_types=SEEDS.names, event_topics=SEEDS.event_topics)
    without = metrics.exposition().decode()
    assert "cronbus_bridge_" not in without
    assert f'topic="{PUBSUB_TOPIC}"' not in without
    assert metrics.bridge is metrics.bridge  # registered once
    with_bridge = metrics.exposition().decode()
    assert "cronbus_bridge_connected 0.0" in with_bridge
    assert 'cronbus_bridge_messages_total{outcome="invalid"} 0.0' in with_bridge
    assert (f'cronbus_events_invalid_total{{reason="not_json",topic="{PUBSUB_TOPIC}"}} 0.0'
            in with_bridge)


def test_every_alert_rounds_its_numbers_and_describes_its_own_metric():
    rules = yaml.safe_load((GRAFANA / "alerts.yml").read_text())["groups"][0]["rules"]
    for rule in rules:
        annotations = rule["annotations"]
        assert annotations.get("summary") and annotations.get("description"), rule["alert"]
        for text in annotations.values():
            for use in re.findall(r"\{\{[^}]*\$value[^}]*\}\}", text):
                assert "humanize" in use or "printf" in use, f"{rule['alert']}: {use} unrounded"
        for name in METRIC_NAME.findall(rule["expr"]):
            family = re.sub(r"_bucket$", "", name)
            assert family in annotations["description"], f"{rule['alert']} does not name {family}"
    [bridge] = [r for r in rules if r["alert"] == "CronbusBridgeDisconnected"]
    assert "count(" not in bridge["expr"]  # quiet by the series' absence, not by a guard


def test_provisioning_points_at_the_dashboards_and_prometheus():
    datasources = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())
    assert datasources["datasources"][0]["uid"] == "prometheus"
    providers = yaml.safe_load((GRAFANA / "provisioning/dashboards/cronbus.yml").read_text())
    assert providers["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    rules = yaml.safe_load((GRAFANA / "alerts.yml").read_text())
    for rule in rules["groups"][0]["rules"]:
        for name in METRIC_NAME.findall(rule["expr"]):
            assert name in exposed_names(), f"alert {rule['alert']} uses unknown {name}"
