"""Job handlers, and job types calling services of their own, on the real broker, Redis and
development APIs: a handler that fails at step 3 of 5 is retried and resumes at step 3 (steps 1
and 2 were called once, every step applied once), its progress and child job are kept, and a
surprise in a handler is a named retryable failure, not a crashed worker; each job type calls
the service it names."""

from __future__ import annotations

import dataclasses
from collections import Counter
from datetime import UTC, datetime

import httpx
import redis.asyncio as aioredis

from cronbus.agents.processing.engine import build_engine
from cronbus.agents.processing.handlers import JobContext
from cronbus.agents.worker.registry import Resources
from cronbus.clients.devstack.dev_api import DevApi
from cronbus.clients.http.downstream import DownstreamClient, make_breaker
from cronbus.clients.kafka.connect import TopicMaker
from cronbus.clients.kafka.publisher import EventPublisher
from cronbus.clients.redis.job_status import JobStatusStore
from cronbus.clients.redis.kept_schedules import KeptSchedules
from cronbus.families.generic import RUN_JOB
from cronbus.streams import topics
from cronbus.streams.catalog import Catalog, JobType
from cronbus.streams.jobs import Job, JobState, job_id_for
from cronbus.streams.metrics import Metrics
from cronbus.streams.settings import ServiceSettings
from tests.integration.kafka import eventually, read_topic
from tests.seeds import SEEDS

STEPS = 5


async def five_steps(job: Job, ctx: JobContext) -> None:
    """Five calls, one step each; the first attempt meets a surprise before step ``fail_at``."""
    for n in range(1, STEPS + 1):
        if n == job.payload["fail_at"] and ctx.attempt == 1:
            raise RuntimeError(f"surprise before step {n}")
        await ctx.graphql(f"step-{n}", RUN_JOB, {"input": {
            "tenantId": job.tenant_id, "jobId": job.job_id, "type": job.type,
            "payload": {"step": n}}})
        await ctx.progress(done=n, total=STEPS)
    await ctx.emit("deferred-effect", {"effect_id": "fx-1"}, ref="effect")


async def test_a_handler_failing_at_step_3_resumes_at_step_3_and_applies_each_step_once(
    settings, api
):
    settings = settings.model_copy(update={"job_types": ["export"]})
    metrics = Metrics()
    redis = aioredis.Redis.from_url(settings.redis_url)
    status = JobStatusStore(redis, namespace=settings.redis_namespace, ttl_s=600)
    client = DownstreamClient(settings.api_url, metrics=metrics, timeout_s=5, breaker=make_breaker(
        "api", fail_max=5, reset_timeout_s=30, metrics=metrics))
    engine = build_engine(
        settings, clients=lambda service: client, status=status, metrics=metrics, alerts=None,
        topic_maker=TopicMaker(settings.broker_url, partitions=settings.partitions,
                               replication=1),
        catalog=Catalog.of([JobType("export", handler=five_steps), SEEDS["deferred-effect"]]),
        kept=KeptSchedules(redis, namespace=settings.redis_namespace),
    )
    job = Job(job_id=job_id_for("acme", "export", "handler-test"), tenant_id="acme",
              type="export", triggered_by="manual", scheduled_at=datetime.now(UTC),
              payload={"fail_at": 3})
    await engine.start()
    try:
        async with EventPublisher(settings.broker_url) as publisher:
            await publisher.publish_raw(topics.job_topic("export"), job.encode(), key=b"acme")
            await publisher.flush()
        found = await eventually(lambda: status.get(job.job_id),
                                 lambda got: bool(got) and got["state"] == JobState.COMPLETED,
                                 timeout_s=60, what="the handler's job completed")
    finally:
        await engine.stop()
        await client.aclose()

    # two attempts; the second resumed at step 3
    assert found["attempts"] == 2
    assert found["progress"] == {"done": STEPS, "total": STEPS}
    keys = [f"{job.job_id}:step-{n}" for n in range(1, STEPS + 1)]
    called = Counter(r["idempotency_key"] for r in api.requests())
    assert [called[key] for key in keys] == [1] * STEPS, "no step was called twice"
    applied = await eventually(api.applied, lambda got: all(k in got for k in keys),
                               timeout_s=5, what="every step applied")
    assert [applied[key] for key in keys] == [1] * STEPS
    kept = await status.finished_steps(job.job_id)
    assert set(kept) == {*(f"step-{n}" for n in range(1, STEPS + 1)), "emit:effect"}

    # the child job, once, under an id made of its parent's and its ref
    children = await read_topic(settings.broker_url, topics.job_topic("deferred-effect"))
    [child] = [Job.decode(r.value) for r in children]
    assert child.job_id == job_id_for("acme", "deferred-effect", f"{job.job_id}:effect")
    assert (child.triggered_by, child.payload) == ("job", {"effect_id": "fx-1"})

    # the surprise was a retryable failure that named the exception
    retried = await read_topic(settings.broker_url,
                               topics.retry_topic(topics.job_topic("export"),
                                                  settings.retry_backoff_s))
    [retry] = retried
    story = dict(retry.headers)
    assert story["cronbus-error-type"] == b"HandlerFailed"
    assert b"RuntimeError: surprise before step 3" in story["cronbus-error"]
    await redis.aclose()


async def test_each_job_type_calls_the_service_it_names(settings, api, tmp_path):
    """Two services, each its own URL and breaker: export names `world`, invoices the default
    `api` (CRONBUS_API_URL); each API sees only its own job's call."""
    world = DevApi(tmp_path / "world").start()
    try:
        settings = settings.model_copy(update={
            "job_types": ["export", "invoice-generation"],
            "services": {"world": ServiceSettings(url=world.url, timeout_s=5)},
        })
        resources = Resources.of(settings, app=None)  # type: ignore[arg-type]  # no web pages
        catalog = Catalog.of([dataclasses.replace(SEEDS["export"], service="world"),
                              SEEDS["invoice-generation"]])
        engine = build_engine(settings, clients=resources.downstream_client,
                              status=resources.status, metrics=resources.metrics, alerts=None,
                              topic_maker=resources.topic_maker, catalog=catalog,
                              kept=KeptSchedules(resources.redis,
                                                 namespace=settings.redis_namespace))
        # started by events: invoice-generation's one call (a scheduled one reads the tenant)
        jobs = [Job(job_id=job_id_for("acme", job_type, "two-services"), tenant_id="acme",
                    type=job_type, triggered_by="event", scheduled_at=datetime.now(UTC))
                for job_type in ("export", "invoice-generation")]
        await engine.start()
        try:
            async with EventPublisher(settings.broker_url) as publisher:
                for job in jobs:
                    await publisher.publish_raw(topics.job_topic(job.type), job.encode(),
                                                key=b"acme")
                await publisher.flush()
            for job in jobs:
                await eventually(lambda job=job: resources.status.get(job.job_id),
                                 lambda found: bool(found) and found["state"] == "completed",
                                 timeout_s=60, what=f"{job.type} job completed")
        finally:
            await engine.stop()
            for client in resources.downstream.values():
                await client.aclose()
        assert sorted(resources.downstream) == ["api", "world"]
        export, invoice = jobs
        world_keys = [r["idempotency_key"] for r in httpx.get(
            f"{world.control_url}/requests", timeout=5).json()]
        api_keys = [r["idempotency_key"] for r in api.requests()]
        assert world_keys == [export.job_id] and api_keys == [invoice.job_id]
        await resources.redis.aclose()
    finally:
        world.stop()
