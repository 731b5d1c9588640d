"""/live, /ready and /health of a running worker as its outside world goes away."""

from __future__ import annotations

import httpx


def get(worker, page: str) -> httpx.Response:
    return httpx.get(f"{worker.base_url}{page}", timeout=10)


async def test_health_names_each_component_and_turns_503_when_kafka_is_gone(stack, start_worker):
    worker = start_worker(shutdown_grace_s="1", health_timeout_s="1")
    assert get(worker, "/live").json() == {"live": True}
    assert get(worker, "/ready").status_code == 200

    healthy = get(worker, "/health")
    body = healthy.json()
    assert healthy.status_code == 200 and body["status"] == "healthy", body
    parts = body["components"]
    assert set(parts) == {"kafka", "redis", "downstream", "breaker"}
    for name in ("kafka", "redis", "downstream"):
        assert parts[name]["status"] == "up"
        assert parts[name]["latency_ms"] >= 0
    assert parts["breaker"] | {"failures": 0} == {
        "status": "up", "latency_ms": None, "service": "api", "state": "closed", "failures": 0}

    assert stack.api is not None
    stack.api.stop()  # the downstream API is gone: jobs would wait, the worker is still fine
    degraded = get(worker, "/health")
    assert degraded.status_code == 200
    assert degraded.json()["status"] == "degraded"
    assert degraded.json()["components"]["downstream"]["status"] == "down"
    assert "error" in degraded.json()["components"]["downstream"]

    assert stack.broker is not None
    stack.broker.stop()  # without Kafka the worker can do nothing
    unhealthy = get(worker, "/health")
    assert unhealthy.status_code == 503
    assert unhealthy.json()["status"] == "unhealthy"
    assert unhealthy.json()["components"]["kafka"]["status"] == "down"
    assert get(worker, "/live").status_code == 200  # alive all the same: no restart needed
