"""Every panel of every Grafana dashboard, evaluated by a real Prometheus scraping a real worker
under a little load: each query must be accepted and return data, and the flow panels must see
the load."""

from __future__ import annotations

import math
import uuid
from collections import defaultdict
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from cronbus.clients.devstack.prometheus import PrometheusServer
from cronbus.clients.kafka.publisher import EventPublisher
from cronbus.streams import topics
from cronbus.streams.events import InvoiceDue
from cronbus.streams.schedules import Schedule
from tests.dashboards import DASHBOARDS, GRAFANA, load, panels, queries, variables
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
    ("cronbus / overview", "Workers up"),
    ("cronbus / job topic", "Processed /s by outcome"),
    ("cronbus / job topic", "Dead-lettered (last 1h)"),
    ("cronbus / ingest and debounce", "Suppression ratio"),
    ("cronbus / ingest and debounce", "Invalid by topic and reason (last 1h)"),
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
    # the bridge on channels of its own: the system Redis is shared with other test runs
    worker = start_worker(roles=("ingest", "processor", "ticker", "bridge"),
                          bridge_patterns=f"campaign.dashboards-{uuid.uuid4().hex[:8]}.*")
    with PrometheusServer([f"127.0.0.1:{worker.web_port}"], tmp_path / "logs",
                          rule_files=[GRAFANA / "alerts.yml"]) as prometheus:
        await eventually(prometheus.targets, lambda t: bool(t) and t[0]["health"] == "up",
                         timeout_s=30, what="Prometheus scraping the worker")

        # the load: bursts for four tenants, one job rejected by the API (dead letter), bad input
        api.fail(400, times=1)
        async with EventPublisher(settings.broker_url) as publisher:
            for n in range(10):
                for tenant in TENANTS:
                    await publisher.publish(invoice_due(tenant, n))
            await publisher.publish_raw(topics.INVOICE_DUE, b"not json", key=b"tenant-0")
            await publisher.flush()

        def seen(promql: str) -> float:
            return sum(values(prometheus.query(promql)))

        await eventually(lambda: seen('cronbus_jobs_processed_total{outcome="completed"}'),
                         lambda v: v >= len(TENANTS) - 1, timeout_s=60, what="jobs completed, scraped")
        await eventually(lambda: seen("cronbus_jobs_dead_lettered_total"), lambda v: v >= 1,
                         timeout_s=30, what="a dead letter, scraped")
        await eventually(lambda: seen("cronbus_events_invalid_total"), lambda v: v >= 1,
                         timeout_s=30, what="an invalid event, scraped")
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
        problems = await eventually(lambda: evaluate_every_panel(prometheus), lambda p: not p,
                                    timeout_s=60, interval_s=2, what="every panel showing data")
        assert not problems

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


def evaluate_every_panel(prometheus: PrometheusServer) -> list[str]:
    """What is wrong with any panel of any dashboard, for every value of its template variables."""
    problems: list[str] = []
    for path in DASHBOARDS:
        board = load(path)
        choices: dict[str, list[str]] = {}
        for variable in variables(board):
            definition = variable["query"]["query"]
            assert definition.startswith("label_values("), definition
            metric, label = (s.strip() for s in definition[len("label_values("):-1].split(","))
            choices[variable["name"]] = prometheus.label_values(label, metric)
            if not choices[variable["name"]]:
                problems.append(f"{board['title']}: ${variable['name']} has no values")
        for chosen in (dict(zip(choices, combo, strict=True)) for combo in _product(choices)):
            shown: dict[str, list[float]] = defaultdict(list)
            for query in queries(board):
                expr = query.substituted(chosen)
                try:
                    result = prometheus.query(expr)
                except ValueError as exc:
                    problems.append(f"{query.dashboard} / {query.panel} {chosen}: {exc}")
                    continue
                if not result:
                    problems.append(f"{query.dashboard} / {query.panel} [{query.ref}] {chosen}: "
                                    f"no data for {expr}")
                shown[query.panel].extend(v for v in values(result) if not math.isnan(v))
            for panel in panels(board):
                title = panel["title"]
                if not shown[title]:
                    problems.append(f"{board['title']} / {title} {chosen}: only NaN, shows nothing")
                loaded = chosen.get("job_type", LOADED_JOB_TYPE) == LOADED_JOB_TYPE
                if (board["title"], title) in MUST_SEE_THE_LOAD and loaded \
                        and not any(v > 0 for v in shown[title]):
                    problems.append(f"{board['title']} / {title} {chosen}: all zero after the load")
    return problems


def _product(choices: dict[str, list[str]]) -> list[tuple[str, ...]]:
    combos: list[tuple[str, ...]] = [()]
    for options in choices.values():
        combos = [(*c, o) for c in combos for o in options]
    return combos


def test_prometheus_is_installed():
    """CI (`make test`) installs Prometheus; a machine without it fails here, loudly, not skips."""
    from cronbus.clients.devstack.prometheus import prometheus_binary

    try:
        prometheus_binary()
    except Exception as exc:
        pytest.fail(str(exc))
