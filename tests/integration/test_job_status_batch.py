"""Batched status writes on the real Redis: the same answers as one call at a time."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import redis.asyncio as aioredis

from clients.job_status import BatchedJobStatus, JobState, JobStatusStore
from streams.jobs import Job
from streams.topics import JobType


def job(n: int) -> Job:
    return Job(job_id=f"export-{uuid.uuid4().hex}-{n}", tenant_id="acme", type=JobType.EXPORT,
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
                             batched.finish(jobs[150].job_id, JobState.DEAD, error="boom"))
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
