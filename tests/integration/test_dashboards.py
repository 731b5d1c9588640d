"""Every panel of every Grafana dashboard, evaluated by a real Prometheus scraping real workers
under a little load: each query must be accepted and return data, and the flow panels must see
the load. Two workers, as a deployment has: one running ingest, processor and ticker (role
``worker``), one running only the Redis bridge (role ``bridge``)."""

from __future__ import annotations

import math
import uuid
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
import redis
import yaml

from cronbus.clients.devstack.prometheus import PrometheusServer
from cronbus.clients.kafka.publisher import EventPublisher
from cronbus.streams import topics
from cronbus.streams.events import InvoiceDue
from cronbus.streams.metrics import PUBSUB_TOPIC
from cronbus.streams.schedules import Schedule
from tests.dashboards import (
    DASHBOARDS,
    GRAFANA,
    METRIC_NAME,
    Query,
    load,
    panels,
    queries,
    variables,
)
from tests.integration.kafka import eventually, write_schedules

TENANTS = [f"tenant-{n}" for n in range(4)]
LOADED_JOB_TYPE = "invoice-generation"

# panels that must show more than zero after the load below: the flow, the errors, dead letters
MUST_SEE_THE_LOAD = {
    ("cronbus / overview", "Events in /s"),
    ("cronbus / overview", "Jobs emitted /s"),
    ("cronbus / overview", "Jobs processed /s"),
    ("cronbus / overview", "Downstream calls /s"),
    ("cronbus / overview", "Invalid events /s"),
    ("cronbus / overview", "Failed attempts /s"),
    ("cronbus / overview", "Dead letters (last 1h)"),
    ("cronbus / overview", "Dead letters per 5 min"),
    ("cronbus / overview", "Workers up"),
    ("cronbus / job topic", "Processed /s by outcome"),
    ("cronbus / job topic", "Dead-lettered (last 1h)"),
    ("cronbus / ingest and debounce", "Suppression ratio"),
    ("cronbus / ingest and debounce", "Invalid by topic and reason (last 1h)"),
    ("cronbus / ingest and debounce", "Debounce outcomes /s"),
    ("cronbus / downstream", "Latency p50 / p95 / p99"),
    ("cronbus / downstream", "Calls /s by status class"),
}


def invoice_due(tenant: str, n: int) -> InvoiceDue:
    return InvoiceDue(event_id=f"{tenant}-evt-{n}", tenant_id=tenant, occurred_at=datetime.now(UTC),
                      invoice_id=f"INV-{n}", due_date=date(2026, 12, 1), amount=Decimal("10.00"))


def values(result: list[dict]) -> list[float]:
    return [float(sample["value"][1]) for sample in result]


async def test_every_panel_of_every_dashboard_shows_data_on_a_real_prometheus(
    stack, api, settings, start_worker, tmp_path
):
    assert DASHBOARDS, "no dashboards in grafana/dashboards"
    worker = start_worker(roles=("ingest", "processor", "ticker"))
    # the bridge on channels of its own: the system Redis is shared with other test runs
    campaign = f"dashboards-{uuid.uuid4().hex[:8]}"
    bridge = start_worker("bridge", roles=("bridge",), bridge_patterns=f"campaign.{campaign}.*")
    instance, bridge_instance = f"127.0.0.1:{worker.web_port}", f"127.0.0.1:{bridge.web_port}"
    with PrometheusServer({instance: "worker", bridge_instance: "bridge"}, tmp_path / "logs",
                          rule_files=[GRAFANA / "alerts.yml"]) as prometheus:
        await eventually(prometheus.targets,
                         lambda t: len(t) == 2 and all(x["health"] == "up" for x in t),
                         timeout_s=30, what="Prometheus scraping both workers")

        # the load: bursts for four tenants, one job rejected by the API (dead letter), bad input
        api.fail(400, times=1)
        async with EventPublisher(settings.broker_url) as publisher:
            for n in range(10):
                for tenant in TENANTS:
                    await publisher.publish(invoice_due(tenant, n))
            await publisher.publish_raw(topics.INVOICE_DUE, b"not json", key=b"tenant-0")
            await publisher.flush()
        # and a message the bridge rejects: an invalid event like any other, topic redis-pubsub
        with redis.Redis.from_url(settings.redis_url) as client:
            assert client.publish(f"campaign.{campaign}.worldTimeAdvanced", b"{not json") >= 1

        def seen(promql: str) -> float:
            return sum(values(prometheus.query(promql)))

        await eventually(lambda: seen('cronbus_jobs_processed_total{outcome="completed"}'),
                         lambda v: v >= len(TENANTS) - 1, timeout_s=60, what="jobs completed, scraped")
        await eventually(lambda: seen("cronbus_jobs_dead_lettered_total"), lambda v: v >= 1,
                         timeout_s=30, what="a dead letter, scraped")
        await eventually(lambda: seen("cronbus_events_invalid_total"), lambda v: v >= 1,
                         timeout_s=30, what="an invalid event, scraped")
        await eventually(
            lambda: seen(f'cronbus_events_invalid_total{{topic="{PUBSUB_TOPIC}",reason="not_json",'
                         f'instance="{bridge_instance}"}}'),
            lambda v: v == 1, timeout_s=30, what="the bridge's rejection, scraped")
        # a schedule firing every second (the schedules dashboard), once the one call told to
        # fail has been used up
        await write_schedules(settings.broker_url, [Schedule(
            id="every-second", tenant_id=TENANTS[0], name="every second",
            job_type="export", every_ms=1000, revision_at=datetime.now(UTC))])
        await eventually(lambda: seen("cronbus_schedule_fire_lag_seconds_count"), lambda v: v >= 2,
                         timeout_s=30, what="schedule fires, scraped")
        # rate() needs a sample after the increase; the breaker's state is known from the start
        await eventually(lambda: seen("sum(rate(cronbus_jobs_processed_total[1m]))"), lambda v: v > 0,
                         timeout_s=30, what="a processing rate")
        assert prometheus.query('cronbus_breaker_state{service="api"}')

        # the whole evaluation again until it passes: the last scrapes may still be on their way
        problems = await eventually(
            lambda: evaluate_every_panel(prometheus, loaded=instance, bridge=bridge_instance),
            lambda p: not p, timeout_s=60, interval_s=2, what="every panel showing data")
        assert not problems

        # debouncing counts each event once: 40 invoices, each routed job type's outcomes sum to
        # 40 once every window has closed, and the share folded into other jobs is within 0..1
        outcomes = {sample["metric"]["job_type"]: float(sample["value"][1]) for sample in
                    prometheus.query(f'sum by (job_type) (cronbus_debounce_events_total'
                                     f'{{job_type="{LOADED_JOB_TYPE}"}})')}
        assert outcomes == {LOADED_JOB_TYPE: 10 * len(TENANTS)}
        [ratio_panel] = [p for p in panels(load(GRAFANA / "dashboards" / "ingest.json"))
                         if p["title"] == "Suppression ratio"]
        ratio = prometheus.query(Query("", "", "", ratio_panel["targets"][0]["expr"])
                                 .substituted({"role": ".*", "instance": ".*"}))
        shown = {s["metric"]["job_type"]: float(s["value"][1]) for s in ratio}
        assert all(0 <= v <= 1 for v in shown.values()), shown
        assert shown[LOADED_JOB_TYPE] > 0.5  # 36 of the 40 joined a tenant's open window

        # the bridge's metrics come from the bridge's worker only, so its alert is quiet on a
        # deployment without one: on the other worker alone its expression is empty
        assert prometheus.query(f'cronbus_bridge_connected{{instance="{bridge_instance}"}}')
        assert not prometheus.query(f'{{__name__=~"cronbus_bridge_.+", instance="{instance}"}}')
        [bridge_rule] = [r for r in alert_rules() if r["alert"] == "CronbusBridgeDisconnected"]
        on_the_worker_alone = bridge_rule["expr"].replace(
            "cronbus_bridge_connected", f'cronbus_bridge_connected{{instance="{instance}"}}')
        assert on_the_worker_alone != bridge_rule["expr"]
        assert not prometheus.query(on_the_worker_alone)

        groups = prometheus.rule_groups()
        assert [g["name"] for g in groups] == ["cronbus"]
        assert all(rule["health"] == "ok" for rule in groups[0]["rules"]), groups
        # the dead letter above is an alert of its own, firing at once
        firing = await eventually(
            prometheus.alerts,
            lambda alerts: any(a["labels"]["alertname"] == "CronbusJobsDeadLettered"
                               and a["state"] == "firing" for a in alerts),
            timeout_s=30, what="the dead-letter alert firing")
        assert {a["labels"].get("job_type") for a in firing
                if a["labels"]["alertname"] == "CronbusJobsDeadLettered"} == {LOADED_JOB_TYPE}


def alert_rules() -> list[dict]:
    return yaml.safe_load((GRAFANA / "alerts.yml").read_text())["groups"][0]["rules"]


ALL = ".*"  # what Grafana sends for a variable's All (its allValue)


def evaluate_every_panel(prometheus: PrometheusServer, *, loaded: str, bridge: str) -> list[str]:
    """What is wrong with any panel of any dashboard, with every variable at All and with each
    value of each variable (the others at All). ``loaded`` is the worker under load, ``bridge``
    the bridge's: a bridge panel shows data where the bridge's worker is selected and nothing
    where only the other is; every other panel shows data where the loaded worker is selected."""
    problems: list[str] = []
    for path in DASHBOARDS:
        board = load(path)
        choices: dict[str, list[str]] = {}
        for variable in variables(board):
            assert variable["includeAll"] and variable["allValue"] == ALL, variable["name"]
            definition = Query("", "", "", variable["query"]["query"]).substituted(
                dict.fromkeys(choices, ALL))
            assert definition.startswith("label_values("), definition
            metric, label = (s.strip() for s in definition[len("label_values("):-1].rsplit(",", 1))
            choices[variable["name"]] = prometheus.label_values(label, metric)
            if not choices[variable["name"]]:
                problems.append(f"{board['title']}: ${variable['name']} has no values")
        if {"role", "instance"} <= set(choices) and (
                set(choices["role"]) != {"worker", "bridge"} or len(choices["instance"]) != 2):
            problems.append(f"{board['title']}: $role {choices['role']}, "
                            f"$instance {choices['instance']}: not both workers")
        combos = _one_at_a_time(choices)
        # all at once, a few in parallel: some hundred queries, each waiting on a busy machine
        with ThreadPoolExecutor(max_workers=8) as pool:
            answered = list(pool.map(lambda args: _answer(prometheus, *args),
                                     [(q, chosen) for chosen in combos for q in queries(board)]))
        for n, chosen in enumerate(combos):
            def selects(role: str, instance: str, chosen: dict[str, str] = chosen) -> bool:
                return chosen.get("role", ALL) in (ALL, role) \
                    and chosen.get("instance", ALL) in (ALL, instance)
            on_the_loaded, on_the_bridge = selects("worker", loaded), selects("bridge", bridge)
            shown: dict[str, list[float]] = defaultdict(list)
            expected: dict[str, bool] = {}
            board_queries = queries(board)
            answers = answered[n * len(board_queries):(n + 1) * len(board_queries)]
            for query, (expr, result) in zip(board_queries, answers, strict=True):
                if isinstance(result, ValueError):
                    problems.append(f"{query.dashboard} / {query.panel} {chosen}: {result}")
                    continue
                names = METRIC_NAME.findall(query.expr)  # none in up{...}
                of_the_bridge = bool(names) and all(n.startswith("cronbus_bridge_") for n in names)
                expected[query.panel] = on_the_bridge if of_the_bridge else on_the_loaded
                if of_the_bridge and result and not on_the_bridge:
                    problems.append(f"{query.dashboard} / {query.panel} {chosen}: bridge data "
                                    f"from a worker without the bridge: {result}")
                if not result and expected[query.panel]:
                    problems.append(f"{query.dashboard} / {query.panel} [{query.ref}] {chosen}: "
                                    f"no data for {expr}")
                shown[query.panel].extend(v for v in values(result) if not math.isnan(v))
            for panel in panels(board):
                title = panel["title"]
                if not expected.get(title, False):
                    continue
                if not shown[title]:
                    problems.append(f"{board['title']} / {title} {chosen}: only NaN, shows nothing")
                loaded_type = chosen.get("job_type", ALL) in (ALL, LOADED_JOB_TYPE)
                if (board["title"], title) in MUST_SEE_THE_LOAD and loaded_type and on_the_loaded \
                        and not any(v > 0 for v in shown[title]):
                    problems.append(f"{board['title']} / {title} {chosen}: all zero after the load")
    return problems


def _answer(prometheus: PrometheusServer, query: Query,
            chosen: dict[str, str]) -> tuple[str, list[dict] | ValueError]:
    expr = query.substituted(chosen)
    try:
        return expr, prometheus.query(expr)
    except ValueError as exc:
        return expr, exc


def _one_at_a_time(choices: dict[str, list[str]]) -> list[dict[str, str]]:
    """Every variable at All, then each value of each variable with the others at All."""
    every = dict.fromkeys(choices, ALL)
    return [every, *({**every, name: value} for name, options in choices.items()
                     for value in options)]


def test_prometheus_is_installed():
    """CI (`make test`) installs Prometheus; a machine without it fails here, loudly, not skips."""
    from cronbus.clients.devstack.prometheus import prometheus_binary

    try:
        prometheus_binary()
    except Exception as exc:
        pytest.fail(str(exc))
