"""/live, /ready and /health of a running worker as its outside world goes away, and a record
the worker keeps failing on, which health names instead of calling the worker healthy."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import httpx

from cronbus.clients.devstack.redis_server import OwnRedis
from cronbus.clients.kafka.publisher import EventPublisher
from cronbus.streams import topics
from cronbus.streams.jobs import Job, job_id_for
from tests.integration.kafka import eventually


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
    # each downstream service the worker calls has its check and its breaker: api (the default,
    # CRONBUS_API_URL), world (the world-time jobs', CRONBUS_SERVICES__WORLD__URL) and
    # notifications (email and push, CRONBUS_SERVICES__NOTIFICATIONS__URL)
    assert set(parts) == {"kafka", "redis", "progress", "downstream:api", "breaker:api",
                          "downstream:world", "breaker:world", "downstream:notifications",
                          "breaker:notifications"}
    assert parts["progress"] == {"status": "up", "latency_ms": None}
    for name in ("kafka", "redis", "downstream:api", "downstream:world",
                 "downstream:notifications"):
        assert parts[name]["status"] == "up"
        assert parts[name]["latency_ms"] >= 0
    for service in ("api", "world", "notifications"):
        assert parts[f"breaker:{service}"] | {"failures": 0} == {
            "status": "up", "latency_ms": None, "state": "closed", "failures": 0}

    assert stack.api is not None
    stack.api.stop()  # the downstream API is gone: jobs would wait, the worker is still fine
    degraded = get(worker, "/health")
    assert degraded.status_code == 200
    assert degraded.json()["status"] == "degraded"
    assert degraded.json()["components"]["downstream:api"]["status"] == "down"
    assert "error" in degraded.json()["components"]["downstream:api"]
    assert degraded.json()["components"]["downstream:world"]["status"] == "up"  # its own

    assert stack.broker is not None
    stack.broker.stop()  # without Kafka the worker can do nothing
    unhealthy = get(worker, "/health")
    assert unhealthy.status_code == 503
    assert unhealthy.json()["status"] == "unhealthy"
    assert unhealthy.json()["components"]["kafka"]["status"] == "down"
    assert get(worker, "/live").status_code == 200  # alive all the same: no restart needed


def stalled_gauge(worker) -> float:
    found = re.search(r'^cronbus_partitions_stalled\{role="processor"\} (\S+)$',
                      worker.metrics_text(), re.M)
    assert found, "the stall gauge is exported"
    return float(found[1])


async def test_a_record_that_keeps_failing_is_named_in_health_and_logged_once(
    settings, start_worker, api, tmp_path
):
    with OwnRedis(tmp_path) as server:
        url = server.url
        worker = start_worker(roles=("processor",), job_types="export", redis_url=url)
        server.stop()  # the job status store is gone: the job cannot begin
        job = Job(job_id=job_id_for("acme", "export", "stalls"), tenant_id="acme",
                  type="export", triggered_by="manual", scheduled_at=datetime.now(UTC),
                  payload={"export_id": "stalls"})
        async with EventPublisher(settings.broker_url) as publisher:
            await publisher.publish_raw(topics.job_topic("export"), job.encode(), key=b"acme")
            await publisher.flush()

        def progress() -> dict:
            return get(worker, "/health").json()["components"]["progress"]

        stuck = await eventually(progress, lambda p: p["status"] == "degraded", timeout_s=30,
                                 what="health to name the stalled partition")
        [stall] = stuck["stalled"]["processor"]
        assert re.fullmatch(r"jobs\.export\[\d\]@0", stall["record"]), stall
        assert stall["tries"] >= 3 and "Error" in stall["error"]
        assert stalled_gauge(worker) == 1
        # Redis away: the job waits, the worker is degraded, not unhealthy (nothing to restart)
        away = get(worker, "/health")
        assert away.status_code == 200
        assert away.json()["status"] == "degraded"
        assert away.json()["components"]["redis"]["status"] == "down"
        await eventually(progress, lambda p: p["stalled"]["processor"][0]["tries"] >= 5,
                         timeout_s=30, what="more failed tries")
        log = worker.process.log_path.read_text(errors="replace")
        # Redis away is said once for the processor, not per record nor per try
        assert log.count("processor export: Redis is unavailable") == 1, log[-3000:]
        assert f"{stall['record']}: processing failed" not in log
        assert "Traceback" not in log

        server.start()  # back, empty, on the same port: the job runs, once
        await eventually(api.applied, lambda got: got.get(job.job_id) == 1, timeout_s=30,
                         what="the job applied once Redis is back")
        await eventually(progress, lambda p: p["status"] == "up", timeout_s=10,
                         what="progress up again")
        assert stalled_gauge(worker) == 0
        log = worker.process.log_path.read_text(errors="replace")
        assert log.count("processor export: Redis answers again") == 1, log[-3000:]
