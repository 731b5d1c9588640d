"""Batched status writes on the real Redis: the same answers as one call at a time."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import redis.asyncio as aioredis

from cronbus.clients.redis.job_status import BatchedJobStatus, JobState, JobStatusStore
from cronbus.streams.jobs import Job


def job(n: int) -> Job:
    return Job(job_id=f"export-{uuid.uuid4().hex}-{n}", tenant_id="acme", type="export",
               triggered_by="manual", scheduled_at=datetime.now(UTC))


async def test_many_jobs_begin_and_finish_in_one_round_trip(stack):
    client = aioredis.Redis.from_url(stack.redis.url)
    try:
        store = JobStatusStore(client, namespace=f"test-{uuid.uuid4().hex[:8]}", ttl_s=60)
        batched = BatchedJobStatus(store)
        jobs = [job(n) for n in range(200)]
        attempts = await asyncio.gather(*(batched.begin_attempt(j) for j in jobs))
        assert attempts == [1] * 200
        again = await asyncio.gather(batched.begin_attempt(jobs[0]), batched.begin_attempt(jobs[0]))
        assert sorted(again) == [2, 3]
        await asyncio.gather(*(batched.finish(j.job_id, JobState.COMPLETED) for j in jobs[:100]),
                             batched.finish(jobs[150].job_id, JobState.DEAD_LETTERED, error="boom"))
        # a completed job is not started again unless forced
        assert await batched.begin_attempt(jobs[5]) == 0
        assert await batched.begin_attempt(jobs[5], force=True) == 2
        assert await batched.begin_attempt(jobs[150]) == 2
        status = await store.get(jobs[150].job_id)
        assert status is not None and status["last_error"] == "boom"
        completed = await store.get(jobs[99].job_id)
        assert completed is not None and completed["state"] == "completed"
        assert completed["finished_at"] >= completed["started_at"]
    finally:
        await client.aclose()


async def test_ids_and_errors_holding_the_field_separator_are_kept_whole(stack):
    """The batch script joins a write's fields with \\x1f: a job id or an error holding one
    (an id is any string) must still name the right hash and be stored as given."""
    client = aioredis.Redis.from_url(stack.redis.url)
    try:
        store = JobStatusStore(client, namespace=f"test-{uuid.uuid4().hex[:8]}", ttl_s=60)
        odd = Job(job_id=f"export-\x1f{uuid.uuid4().hex}\x1fx", tenant_id="acme",
                  type="export", triggered_by="manual", scheduled_at=datetime.now(UTC))
        assert await store.begin_attempt(odd) == 1
        await store.finish(odd.job_id, JobState.RETRY_DUE, error="a\x1fb")
        status = await store.get(odd.job_id)
        assert status is not None
        assert (status["state"], status["last_error"], status["attempts"]) == ("retry_due", "a\x1fb", 1)
        assert status["tenant_id"] == "acme" and "finished_at" not in status
        counts = await store.queue_counts(["export"])
        assert counts["export"]["failed"] == 1
    finally:
        await client.aclose()
