"""Priorities on the real broker, Redis and development API: with a worker busy on a backlog of
normal jobs (the API answering slowly, so they queue), a HIGH job started by an event's priority
and one started by a schedule's priority (run by hand) go to the high tier's topic and complete
before most of the backlog; every job is applied exactly once, and a bad priority is a 422
naming the field."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import httpx

from cronbus.clients.kafka.publisher import EventPublisher
from cronbus.streams import topics
from cronbus.streams.events import ExportRequested
from cronbus.streams.jobs import Job, job_id_for
from cronbus.streams.priorities import Tier
from tests.integration.kafka import eventually, read_topic

TOKENS = "tok-acme:acme"
ACME = {"Authorization": "Bearer tok-acme"}
BACKLOG = 2_000


async def test_high_priority_jobs_pass_the_backlog_and_every_job_runs_once(
    settings, api, start_worker
):
    worker = start_worker(roles=("ingest", "processor", "api"), web_api_tokens=TOKENS,
                          job_types="export", processor_concurrency="10")
    api.delay(0.05)  # 10 in flight, 50 ms each: the backlog takes about 10 s
    run = uuid.uuid4().hex[:6]
    backlog = [Job(job_id=job_id_for("acme", "export", f"backlog:{run}:{i}"), tenant_id="acme",
                   type="export", triggered_by="manual", scheduled_at=datetime.now(UTC),
                   payload={"n": i}, priority=5) for i in range(BACKLOG)]
    async with EventPublisher(settings.broker_url) as publisher:
        for job in backlog:
            await publisher.publish_raw(topics.job_topic_for("export", job.priority), job.encode(),
                                        key=b"acme")
        await publisher.flush()
    backlog_ids = {job.job_id for job in backlog}
    await eventually(api.applied, lambda a: len(a) >= 100, timeout_s=30,
                     what="the worker busy with the backlog")

    async with httpx.AsyncClient(base_url=worker.base_url, timeout=10) as http:
        bad = await http.post("/schedules", headers=ACME, json={
            "id": "urgent", "job_type": "export", "every_ms": 3_600_000, "priority": "asap"})
        assert bad.status_code == 422, bad.text
        assert [p["field"] for p in bad.json()["problems"]] == ["priority"]
        made = await http.post("/schedules", headers=ACME, json={
            "id": "urgent", "job_type": "export", "every_ms": 3_600_000, "priority": "high"})
        assert made.status_code == 201 and made.json()["priority"] == 8, made.text
        triggered = await http.post("/schedules/urgent/trigger", headers=ACME)
        assert triggered.status_code == 202, triggered.text
        by_schedule = triggered.json()["run"]["job_id"]
    async with EventPublisher(settings.broker_url) as publisher:
        await publisher.publish(ExportRequested(
            event_id=f"urgent-{run}", tenant_id="acme", occurred_at=datetime.now(UTC),
            export_id="x-1", priority="high"))  # type: ignore[arg-type]
    by_event = job_id_for("acme", "export", f"event:urgent-{run}")
    high = {by_schedule, by_event}

    applied = await eventually(api.applied, lambda a: high <= set(a), timeout_s=30,
                               what="both high-priority jobs applied")
    passed = len(backlog_ids - set(applied))
    assert passed > BACKLOG // 2, f"only {passed} backlog jobs were still waiting"
    on_high = await read_topic(settings.broker_url, topics.tier_topic("export", Tier.HIGH),
                               timeout_s=3)
    assert {Job.decode(r.value).job_id for r in on_high} == high

    api.delay(0)
    applied = await eventually(api.applied, lambda a: backlog_ids | high <= set(a),
                               timeout_s=60, what="the whole backlog applied")
    assert {k: applied[k] for k in backlog_ids | high} == dict.fromkeys(backlog_ids | high, 1)
