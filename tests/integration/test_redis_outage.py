"""Redis away under a worker of every role that calls it (processors, ingest, ticker, the API,
the bridge on the same Redis): no worker exits, health says degraded, the API answers 503, jobs
wait; the log says it once per component with no traceback, and once that it is back; after it
returns (empty) health is healthy again within a bound and every job is applied exactly once."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import httpx

from cronbus.clients.devstack.redis_server import OwnRedis
from cronbus.clients.kafka.publisher import EventPublisher
from cronbus.streams import topics
from cronbus.streams.events import ExportRequested, encode_event
from cronbus.streams.jobs import Job, job_id_for
from cronbus.streams.keys import tenant_key
from cronbus.streams.schedules import Schedule
from tests.integration.kafka import eventually, write_schedules

TOKEN = "outage-token"
COMPONENTS = ("processor export", "ticker", "schedules API")
# README "What a Redis outage costs": every component up again this soon after Redis is back
HEALTH_BACK_S = 15.0


def job(n: int) -> Job:
    return Job(job_id=job_id_for("acme", "export", f"outage:{n}"), tenant_id="acme",
               type="export", triggered_by="manual", scheduled_at=datetime.now(UTC),
               payload={"export_id": f"outage-{n}"})


async def test_a_redis_outage_is_said_once_per_component_and_loses_nothing(
    settings, start_worker, api, tmp_path
):
    with OwnRedis(tmp_path) as server:
        worker = start_worker(roles=("ingest", "processor", "ticker", "api", "bridge"),
                              job_types="export", redis_url=server.url,
                              bridge_redis_url=server.url, web_api_tokens=f"{TOKEN}:acme")
        schedules_url = f"{worker.base_url}/schedules"
        auth = {"Authorization": f"Bearer {TOKEN}"}
        # a token not in the settings is looked up in Redis
        unknown = {"Authorization": "Bearer a-token-kept-in-redis"}
        # a schedule firing every second keeps the ticker calling Redis (fire states)
        await write_schedules(settings.broker_url, [Schedule.model_validate({
            "id": "every-second", "tenant_id": "ticking", "name": "every second",
            "job_type": "export", "every_ms": 1000, "revision_at": datetime.now(UTC)})])
        before = [job(n) for n in range(50)]
        during = [job(n) for n in range(50, 300)]
        event = ExportRequested(event_id="outage-event", tenant_id="acme",
                                occurred_at=datetime.now(UTC), export_id="from-an-event")
        async with EventPublisher(settings.broker_url) as publisher:
            for one in before:
                await publisher.publish_raw(topics.job_topic("export"), one.encode(), key=b"acme")
            await publisher.flush()
            await eventually(api.applied, lambda got: all(j.job_id in got for j in before),
                             timeout_s=60, what="the jobs before the outage applied")

            server.stop()
            for one in during:  # 250 records waiting for Redis: the log must not grow per record
                await publisher.publish_raw(topics.job_topic("export"), one.encode(), key=b"acme")
            await publisher.publish_raw(topics.EXPORT_REQUESTED, encode_event(event),
                                        key=tenant_key("acme"))
            await publisher.flush()
            await asyncio.sleep(8)
            health = httpx.get(f"{worker.base_url}/health", timeout=10)
            assert health.status_code == 200, health.text
            assert health.json()["status"] == "degraded"
            assert health.json()["components"]["redis"]["status"] == "down"
            assert health.json()["components"]["bridge"]["state"] == "reconnecting"
            answer = httpx.get(schedules_url, headers=unknown, timeout=10)
            assert answer.status_code == 503 and answer.headers["Retry-After"], answer.text
            assert not any(j.job_id in api.applied() for j in during), "jobs wait for Redis"
            assert worker.process.alive()
            log = worker.process.log_path.read_text(errors="replace")
            for component in COMPONENTS:
                assert log.count(f"{component}: Redis is unavailable") == 1, (component, log[-4000:])
            assert "Traceback" not in log, log[-4000:]

            server.start()  # back, empty, on the same port
            back = time.monotonic()
            # every component up again, the bridge subscribed and stalled partitions moving:
            # nothing kept in the emptied Redis holds health back
            await eventually(lambda: httpx.get(f"{worker.base_url}/health", timeout=10).json(),
                             lambda body: body["status"] == "healthy",
                             timeout_s=HEALTH_BACK_S - (time.monotonic() - back),
                             interval_s=0.25, what="health back to healthy after Redis")
            await eventually(api.applied, lambda got: all(j.job_id in got for j in during),
                             timeout_s=90, what="every job applied once Redis is back")
        applied = api.applied()
        assert all(applied[j.job_id] == 1 for j in before + during)
        exported = [r for r in api.requests() if r.get("tenant_id") == "acme"
                    and r.get("applied") and r["job_id"] not in {j.job_id for j in before + during}]
        assert len(exported) == 1, "the event's export ran once"
        assert httpx.get(schedules_url, headers=unknown, timeout=10).status_code == 401
        assert httpx.get(schedules_url, headers=auth, timeout=10).status_code == 200
        await eventually(lambda: worker.process.log_path.read_text(errors="replace"),
                         lambda text: all(text.count(f"{c}: Redis answers again") == 1
                                          for c in ("processor export", "schedules API")),
                         timeout_s=30, what="Redis back, said once per component")
        log = worker.process.log_path.read_text(errors="replace")
        assert "Traceback" not in log
        assert log.count("Redis is unavailable") == len(COMPONENTS), log[-4000:]
