from __future__ import annotations

import json
import logging

import httpx
import pybreaker
import pytest

from cronbus.agents.processing.alerts import Alerts
from cronbus.clients.http.downstream import DownstreamUnavailable, make_breaker
from cronbus.clients.http.webhook import Webhook
from cronbus.streams.metrics import Metrics
from cronbus.streams.settings import Settings


def alert_count(metrics: Metrics, kind: str) -> float:
    return metrics.registry.get_sample_value("cronbus_alerts_total", {"kind": kind}) or 0.0


def test_a_dead_letter_alert_is_logged_and_counted_without_a_webhook(caplog):
    metrics = Metrics()
    alerts = Alerts(Settings(), metrics)
    with caplog.at_level(logging.ERROR):
        alerts.dead_lettered(job_type="export", job_id="j-1", tenant_id="acme",
                             topic="jobs.export.dead-letter", error_type="PermanentError", attempts=1)
    assert alert_count(metrics, "dead_letter") == 1
    assert "ALERT dead_letter" in caplog.text and "j-1" in caplog.text


async def test_alerts_are_posted_to_the_webhook_and_failures_counted():
    posted: list[dict] = []

    def receive(request: httpx.Request) -> httpx.Response:
        posted.append(json.loads(request.content))
        return httpx.Response(200 if len(posted) == 1 else 500)

    metrics = Metrics()
    alerts = Alerts(Settings(), metrics)
    alerts.webhook = Webhook("http://hooks.test/cronbus", timeout_s=1,
                             transport=httpx.MockTransport(receive))
    alerts.breaker_opened("api")
    alerts.breaker_opened("api")
    await alerts.aclose()  # waits for both deliveries

    assert [p["kind"] for p in posted] == ["breaker_open", "breaker_open"]
    assert posted[0]["details"] == {"service": "api"}
    assert alert_count(metrics, "breaker_open") == 2
    assert metrics.registry.get_sample_value("cronbus_alert_webhook_failures_total") == 1


def test_opening_the_breaker_calls_on_open_with_the_service():
    opened: list[str] = []
    metrics = Metrics()
    breaker = make_breaker("api", fail_max=2, reset_timeout_s=60, metrics=metrics,
                           on_open=opened.append)
    for _ in range(2):
        with pytest.raises((DownstreamUnavailable, pybreaker.CircuitBreakerError)), breaker.calling():
            raise DownstreamUnavailable("down", service="api")
    assert opened == ["api"]
    assert metrics.registry.get_sample_value("cronbus_breaker_state", {"service": "api"}) == 2
