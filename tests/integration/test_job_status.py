"""Job status and queues on the worker's web API and the CLI, on the real broker, Redis and
development API; and the Redis counters behind them."""

from __future__ import annotations

import time

import httpx
import redis.asyncio as aioredis
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from cronbus.clients.kafka.publisher import EventPublisher
from cronbus.clients.redis.job_status import ACTIVE_STALE_S, JobState, JobStatusStore
from cronbus.streams import topics
from tests.integration.cli import cronbus_json, run_cronbus
from tests.integration.kafka import eventually
from tests.integration.test_dlq_replay import export_job
from tests.seeds import SEEDS

TOPIC = topics.job_topic("export")
TOKENS = "tok-sys:system,tok-acme:acme"
SYSTEM = {"Authorization": "Bearer tok-sys"}


async def test_counters_follow_attempts_in_redis(stack, settings):
    client = aioredis.Redis.from_url(settings.redis_url)
    try:
        store = JobStatusStore(client, namespace=settings.redis_namespace, ttl_s=60)
        a, b, c = export_job("a"), export_job("b"), export_job("c")
        t0 = float(int(time.time()))  # whole seconds: kept to the millisecond
        assert await store.queue_counts(["export"]) == {
            "export": {"active": 0, "completed": 0, "failed": 0, "dead_lettered": 0}}
        for job in (a, b):
            assert await store.begin_attempt(job, now=t0, record_at="jobs.export/1/5") == 1
        assert (await store.queue_counts(["export"]))["export"]["active"] == 2
        await store.finish(a.job_id, JobState.COMPLETED)
        await store.finish(b.job_id, JobState.RETRY_DUE, error="DownstreamUnavailable: 503",
                           now=t0 + 1, answer=503)
        assert await store.begin_attempt(b, now=t0 + 2, record_at="jobs.export.retry.1/0/9") == 2
        await store.finish(b.job_id, JobState.DEAD_LETTERED, error="DownstreamTimeout: late",
                           now=t0 + 3)
        # the console's job page: each failed attempt, the first record's place, the first start
        assert await store.attempt_log(b.job_id) == [
            {"attempt": 1, "started_at": t0, "ended_at": t0 + 1, "state": "retry_due",
             "status": 503, "error": "DownstreamUnavailable: 503"},
            {"attempt": 2, "started_at": t0 + 2, "ended_at": t0 + 3, "state": "dead_lettered",
             "status": None, "error": "DownstreamTimeout: late"}]
        assert await store.attempt_log(a.job_id) == []
        kept = await store.get(b.job_id)
        assert kept is not None
        assert (kept["record_at"], kept["first_started_at"]) == ("jobs.export/1/5", t0)
        assert await store.begin_attempt(a) == 0  # completed: no attempt, nothing counted
        assert await store.begin_attempt(a, force=True) == 2  # a forced replay runs it again
        await store.finish(a.job_id, JobState.COMPLETED)
        # a worker that died mid-attempt long ago: its entry is not counted as active
        await store.begin_attempt(c, now=1_000.0)
        counts = await store.queue_counts(["export", "bank-sync"], now=1_000.0 + ACTIVE_STALE_S + 1)
        assert counts == {
            "export": {"active": 0, "completed": 2, "failed": 1, "dead_lettered": 1},
            "bank-sync": {"active": 0, "completed": 0, "failed": 0, "dead_lettered": 0},
        }
        status = await store.get(b.job_id)
        assert status is not None
        assert (status["state"], status["attempts"]) == ("dead_lettered", 2)
        assert status["last_error"] == "DownstreamTimeout: late" and "finished_at" in status
    finally:
        await client.aclose()


async def test_status_queues_and_retry_failed_on_the_web_api_and_the_cli(
    stack, api, settings, cronbus_env, start_worker
):
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.broker_url)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(TOPIC, num_partitions=4, replication_factor=1)])
    finally:
        await admin.close()
    jobs = [export_job(t) for t in ("acme", "globex", "initech")]
    async with EventPublisher(settings.broker_url) as publisher:
        for job in jobs:
            await publisher.publish_raw(TOPIC, job.encode(), key=job.tenant_id.encode())

    # no worker yet: all three wait
    [waiting] = cronbus_json(cronbus_env, "jobs", "queues", "--job-type", "export")
    assert waiting == {"job_type": "export", "topic": TOPIC, "waiting": 3,
                       "waiting_by_tier": {"high": 0, "normal": 3, "low": 0}, "active": 0,
                       "completed": 0, "failed": 0, "dead_lettered": 0}

    api.fail(400, times=1)  # the first job to be called is rejected: dead-lettered
    # the status pages need a token: the system tenant's sees every tenant
    worker = start_worker(roles=("processor",), web_api_tokens=TOKENS)

    def queue() -> dict:
        return httpx.get(f"{worker.base_url}/queues/export", timeout=10, headers=SYSTEM).json()

    done = await eventually(queue, lambda q: q["completed"] == 2 and q["waiting"] == 0,
                            timeout_s=60, what="two jobs completed and the lag committed")
    per_minute = done.pop("completed_per_minute")
    assert len(per_minute) == 10 and per_minute[-1] in (None, 0, 1, 2)  # the minute under way
    assert done | {"waiting": 0} == {"job_type": "export", "topic": TOPIC, "waiting": 0,
                                     "waiting_by_tier": {"high": 0, "normal": 0, "low": 0},
                                     "active": 0, "completed": 2, "failed": 0, "dead_lettered": 1,
                                     "paused": False}
    every = httpx.get(f"{worker.base_url}/queues", timeout=10, headers=SYSTEM).json()["queues"]
    assert [q["job_type"] for q in every] == SEEDS.names
    assert sum(q["completed"] for q in every) == 2

    states = {job.tenant_id: httpx.get(f"{worker.base_url}/jobs/{job.job_id}", timeout=10,
                                       headers=SYSTEM).json() for job in jobs}
    [rejected] = [t for t, s in states.items() if s["state"] == "dead_lettered"]
    assert states[rejected]["last_error"].startswith("PermanentError")
    assert states[rejected]["attempts"] == 1 and "finished_at" in states[rejected]
    # its page: the attempt, what the API answered, its cause and payload (from its record)
    detail = states[rejected]
    assert [(a["attempt"], a["outcome"], a["downstream"]) for a in detail["attempt_log"]] == [
        (1, "dead_lettered", "HTTP 400")]
    assert detail["cause"]["triggered_by"] == "manual"
    assert detail["payload"] == {"export_id": f"EXP-{rejected}"}
    assert [t["what"].split(":")[0] for t in detail["timeline"]] == [
        "emitted", "attempt 1 started", "dead-lettered after attempt 1", "finished"]
    for tenant, state in states.items():
        assert state["tenant_id"] == tenant and state["type"] == "export"
        if tenant != rejected:
            assert state["state"] == "completed" and state["attempts"] == 1
    missing = httpx.get(f"{worker.base_url}/jobs/no-such-job", timeout=10, headers=SYSTEM)
    assert missing.status_code == 404 and "no-such-job" in missing.json()["error"]
    # without a token nothing answers; a tenant's token sees its own jobs and counts only
    for path in (f"/jobs/{jobs[0].job_id}", "/queues", "/queues/export"):
        assert httpx.get(f"{worker.base_url}{path}", timeout=10).status_code == 401
    acme = {"Authorization": "Bearer tok-acme"}
    assert httpx.get(f"{worker.base_url}/jobs/{jobs[0].job_id}", timeout=10,
                     headers=acme).json()["tenant_id"] == "acme"
    assert httpx.get(f"{worker.base_url}/jobs/{jobs[1].job_id}", timeout=10,
                     headers=acme).status_code == 404  # globex's: as if there were none
    own = httpx.get(f"{worker.base_url}/queues/export", timeout=10, headers=acme).json()
    assert (own["waiting"], own["active"]) == (None, 0)  # waiting: kept per job type only
    assert own["completed"] + own["dead_lettered"] == 1  # acme's one job, not all three
    refused = httpx.post(f"{worker.base_url}/queues/export/retry-failed", timeout=30,
                         headers=acme, json={"tenant_id": "globex"})
    assert refused.status_code == 400 and "tenant_id" in refused.json()["error"]
    unknown = httpx.get(f"{worker.base_url}/queues/payroll", timeout=10, headers=SYSTEM)
    assert unknown.status_code == 404 and "unknown job type 'payroll'" in unknown.json()["error"]

    rejected_job = next(j for j in jobs if j.tenant_id == rejected)
    cli_status = run_cronbus(cronbus_env, "jobs", "status", rejected_job.job_id)
    assert cli_status.returncode == 0 and '"state": "dead_lettered"' in cli_status.stdout
    table = run_cronbus(cronbus_env, "jobs", "queues")
    assert table.returncode == 0
    [row] = [line.split() for line in table.stdout.splitlines() if line.startswith("export ")]
    assert row == ["export", "0", "0", "2", "0", "1"]

    # retry failed jobs: a dry run from the CLI, then for real over the web API, by tenant
    dry = cronbus_json(cronbus_env, "jobs", "retry-failed", "export", "--dry-run")
    assert (dry["matched"], dry["replayed"]) == (1, 0)
    other = httpx.post(f"{worker.base_url}/queues/export/retry-failed", timeout=30,
                       headers=SYSTEM, json={"tenant_id": "nobody"}).json()
    assert (other["matched"], other["replayed"]) == (0, 0)
    bad = httpx.post(f"{worker.base_url}/queues/export/retry-failed", timeout=30,
                     headers=SYSTEM, json={"tenant": rejected})
    assert bad.status_code == 400 and "tenant" in bad.json()["error"]
    retried = httpx.post(f"{worker.base_url}/queues/export/retry-failed", timeout=30,
                         headers=SYSTEM, json={"tenant_id": rejected}).json()
    assert (retried["matched"], retried["replayed"]) == (1, 1)
    assert retried["to_topics"] == {TOPIC: 1}
    await eventually(queue, lambda q: q["completed"] == 3, timeout_s=30,
                     what="the retried job completed")
    applied = [r for r in api.requests() if r["applied"]]
    assert sorted(r["tenant_id"] for r in applied) == sorted(j.tenant_id for j in jobs)
    assert ('cronbus_dead_letters_replayed_total{job_type="export"} 1.0'
            in worker.metrics_text())

    missing_type = run_cronbus(cronbus_env, "jobs", "retry-failed", "payroll")
    assert missing_type.returncode == 2
    assert "unknown job type 'payroll'; known: bank-sync, " in missing_type.stderr
