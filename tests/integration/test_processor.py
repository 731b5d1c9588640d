"""The processor engine on the real broker, Redis and development API: retries through the
retry topics at about 1, 2 and 4 s, dead letters with their whole story, Retry-After, a 400
dead-lettered at once, an outage that pauses consumption instead of burning attempts, and a
kill -9 with jobs in flight that loses nothing and applies nothing twice."""

from __future__ import annotations

import itertools
import os
import time
from datetime import UTC, datetime
from pathlib import Path

import redis.asyncio as aioredis

from cronbus.clients.kafka.publisher import EventPublisher
from cronbus.clients.redis.job_status import JobStatusStore
from cronbus.streams import headers, topics
from cronbus.streams.jobs import Job, job_id_for
from tests.integration.kafka import eventually, read_topic

TOPIC = topics.job_topic("export")
DEAD = topics.dead_letter_topic(TOPIC)


def export_job(tenant: str, n: int = 0) -> Job:
    return Job(job_id=job_id_for(tenant, "export", f"test:{tenant}:{n}"), tenant_id=tenant,
               type="export", triggered_by="manual", scheduled_at=datetime.now(UTC),
               payload={"export_id": f"EXP-{tenant}-{n}"})


async def publish(brokers: list[str], jobs: list[Job]) -> None:
    async with EventPublisher(brokers) as publisher:
        for job in jobs:
            await publisher.publish_raw(TOPIC, job.encode(), key=job.tenant_id.encode())
        await publisher.flush()


def calls_of(api, job: Job) -> list[dict]:
    return [r for r in api.requests() if r["idempotency_key"] == job.job_id]


async def statuses(settings, jobs: list[Job]) -> dict[str, dict | None]:
    client = aioredis.Redis.from_url(settings.redis_url)
    try:
        store = JobStatusStore(client, namespace=settings.redis_namespace, ttl_s=60)
        return {job.job_id: await store.get(job.job_id) for job in jobs}
    finally:
        await client.aclose()


async def dead_letters(settings, expected: int, timeout_s: float = 60) -> list:
    deadline = time.monotonic() + timeout_s
    letters = await read_topic(settings.broker_url, DEAD, idle_s=0.5, timeout_s=5)
    while len(letters) < expected and time.monotonic() < deadline:
        letters = await read_topic(settings.broker_url, DEAD, idle_s=0.5, timeout_s=5)
    return letters


async def test_retries_at_one_two_four_seconds_then_a_dead_letter_and_a_400_at_once(
    stack, api, settings, start_worker
):
    start_worker(roles=("processor",), job_types="export", retry_backoff_s="1",
                 breaker_fail_max="100")

    # a 400 is the job's fault: dead-lettered at once, one call
    rejected = export_job("acme", 1)
    api.fail(400, times=1)
    await publish(settings.broker_url, [rejected])
    [letter] = await dead_letters(settings, 1)
    assert (letter.key, letter.value) == (b"acme", rejected.encode())
    story = headers.decode(letter.headers)
    assert story[headers.ERROR_TYPE] == "PermanentError"
    assert story[headers.ATTEMPTS] == "1"
    assert len(calls_of(api, rejected)) == 1

    # a 429 is honoured: the next attempt waits Retry-After (3 s), not the 1 s backoff
    limited = export_job("acme", 2)
    api.fail(429, times=1, retry_after=3)
    await publish(settings.broker_url, [limited])
    calls = await eventually(lambda: calls_of(api, limited), lambda c: len(c) >= 2, timeout_s=30,
                             what="the rate-limited job called again")
    assert [c["status"] for c in calls] == [429, 200]
    assert 2.9 <= calls[1]["at"] - calls[0]["at"] <= 6

    # 500s: the first call, then retries about 1, 2 and 4 s apart, then the dead letter
    failing = export_job("globex", 3)
    api.fail(500)
    await publish(settings.broker_url, [failing])
    letters = await dead_letters(settings, 2)
    api.stop_failing()
    assert len(letters) == 2
    letter = next(r for r in letters if r.key == b"globex")
    assert letter.value == failing.encode()  # byte for byte
    story = headers.decode(letter.headers)
    assert story[headers.ERROR_TYPE] == "DownstreamUnavailable"
    assert "500" in story[headers.ERROR]
    assert story[headers.ATTEMPTS] == "4"
    assert story[headers.ORIGINAL_TOPIC] == TOPIC
    first, last = float(story[headers.FIRST_FAILURE_AT]), float(story[headers.LAST_FAILURE_AT])
    assert 6.0 <= last - first <= 12.0, (first, last)

    calls = calls_of(api, failing)
    assert [c["status"] for c in calls] == [500] * 4
    gaps = [b["at"] - a["at"] for a, b in itertools.pairwise(calls)]
    for gap, nominal in zip(gaps, (1, 2, 4), strict=True):
        assert nominal * 0.85 <= gap <= nominal * 0.85 + 2.0, gaps

    for attempt, delay in enumerate((1, 2, 4), start=1):
        [retry] = [r for r in await read_topic(settings.broker_url, topics.retry_topic(TOPIC, delay),
                                               idle_s=0.5) if r.key == b"globex"]
        assert retry.value == failing.encode()
        assert headers.decode(retry.headers)[headers.ATTEMPTS] == str(attempt)

    found = await statuses(settings, [failing, limited, rejected])
    assert found[failing.job_id]["state"] == "dead_lettered"
    assert found[failing.job_id]["attempts"] == 4
    assert found[limited.job_id]["state"] == "completed"
    assert found[rejected.job_id]["state"] == "dead_lettered"


def failed_calls(metrics_text: str) -> float:
    """Downstream calls that got no answer, as the worker counts them."""
    [line] = [line for line in metrics_text.splitlines() if line.startswith(
        'cronbus_downstream_request_seconds_count{service="api",status_class="error"}')]
    return float(line.split()[-1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def test_an_outage_opens_the_breaker_and_pauses_consumption_without_dead_letters(
    stack, api, settings, start_worker
):
    worker = start_worker(roles=("processor",), job_types="export", breaker_fail_max="3",
                          breaker_reset_timeout_s="2")
    jobs = [export_job(f"tenant-{n % 7}", n) for n in range(60)]
    assert stack.api is not None
    stack.api.stop()
    await publish(settings.broker_url, jobs[:30])
    await eventually(worker.metrics_text,
                     lambda text: 'cronbus_breaker_state{service="api"} 2.0' in text,
                     timeout_s=30, what="the breaker open")
    cpu_before, started = cpu_seconds(worker.process.pid), time.monotonic()
    calls_before = failed_calls(worker.metrics_text())
    await publish(settings.broker_url, jobs[30:])
    time.sleep(10)  # the outage goes on: the worker must wait, not spin
    cpu_used = cpu_seconds(worker.process.pid) - cpu_before
    assert cpu_used < 0.5 * (time.monotonic() - started), f"{cpu_used:.1f}s of CPU while paused"
    # each reset window (2 s) lets one waiting job probe, not all thirty
    probes = failed_calls(worker.metrics_text()) - calls_before
    assert 1 <= probes <= (time.monotonic() - started) / 2 + 1, f"{probes} calls in the outage"
    log = worker.process.log_path.read_text()
    assert "pausing consumption" in log

    stack.api.start()
    done = await eventually(lambda: api.applied(), lambda a: len(a) >= len(jobs), timeout_s=90,
                            what="every job applied after the API came back")
    assert set(done) == {job.job_id for job in jobs}
    assert all(count == 1 for count in done.values())
    assert await read_topic(settings.broker_url, DEAD, idle_s=1.0, timeout_s=3) == []
    found = await statuses(settings, jobs)
    assert {s["state"] for s in found.values() if s} == {"completed"}
    # at most the failures before the breaker opened were spent: nobody near the dead letters
    assert max(s["attempts"] for s in found.values() if s) <= 8
    text = worker.metrics_text()
    assert 'cronbus_jobs_dead_lettered_total{job_type="export"} 0.0' in text


async def test_kill_9_with_jobs_in_flight_loses_nothing_and_applies_each_key_once(
    stack, api, settings, start_worker
):
    api.delay(0.2)  # slow answers: a kill finds jobs in flight
    jobs = [export_job(f"tenant-{n % 11}", n) for n in range(400)]
    first = start_worker("first", roles=("processor",), job_types="export")
    await publish(settings.broker_url, jobs)
    await eventually(lambda: api.applied(), lambda a: len(a) >= 60, timeout_s=60,
                     what="some jobs applied")
    first.kill()
    killed_at = len(api.applied())
    assert killed_at < len(jobs), "every job finished before the kill: nothing was in flight"

    api.delay(0)
    start_worker("second", roles=("processor",), job_types="export")
    done = await eventually(lambda: api.applied(), lambda a: len(a) >= len(jobs), timeout_s=120,
                            what="every job applied after the restart")
    assert set(done) == {job.job_id for job in jobs}
    assert all(count == 1 for count in done.values()), {k: c for k, c in done.items() if c != 1}
    calls = [c for c in api.requests() if c["status"] == 200]
    assert all(c["idempotency_key"] == c["job_id"] for c in calls)
    # a job that completed is acknowledged without a call when it comes again: only the jobs
    # in flight at the kill (at most the concurrency) were called twice
    assert len(calls) <= len(jobs) + 50, len(calls)
    states = await statuses(settings, jobs)
    assert {s["state"] for s in states.values() if s} == {"completed"}
