"""Job status in Redis: one hash per job, kept for a TTL.

The completed state doubles as the idempotency record: a redelivered or replayed job
whose id is already completed is acknowledged without calling downstream again.
"""

from __future__ import annotations

import time
from enum import StrEnum
from typing import Any

import redis.asyncio as aioredis

from streams.jobs import Job


class JobState(StrEnum):
    WAITING = "waiting"
    ACTIVE = "active"
    COMPLETED = "completed"
    FAILED = "failed"
    DEAD = "dead"


# Starts an attempt in one round trip: unless the job already completed, count the attempt
# and mark it active. Returns the attempt number, or 0 when the job is already completed.
_BEGIN_ATTEMPT = """
if ARGV[5] ~= '1' and redis.call('HGET', KEYS[1], 'state') == 'completed' then return 0 end
local attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HSET', KEYS[1], 'state', 'active', 'tenant_id', ARGV[1], 'type', ARGV[2],
           'started_at', ARGV[3], 'updated_at', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
return attempts
"""


class JobStatusStore:
    def __init__(self, client: aioredis.Redis, *, namespace: str, ttl_s: int) -> None:
        self._redis = client
        self._namespace = namespace
        self._ttl_s = ttl_s
        self._begin = client.register_script(_BEGIN_ATTEMPT)

    def key(self, job_id: str) -> str:
        return f"{self._namespace}:job:{job_id}"

    async def begin_attempt(self, job: Job, *, now: float | None = None, force: bool = False) -> int:
        """Mark the job active and return its attempt number; 0 if it already completed
        (unless ``force``: a forced replay runs a completed job again)."""
        stamp = now if now is not None else time.time()
        return int(await self._begin(
            keys=[self.key(job.job_id)],
            args=[job.tenant_id, job.type.value, f"{stamp:.3f}", self._ttl_s, "1" if force else "0"],
        ))

    async def finish(
        self, job_id: str, state: JobState, *, error: str | None = None, now: float | None = None
    ) -> None:
        stamp = f"{(now if now is not None else time.time()):.3f}"
        fields: dict[str, str] = {"state": state.value, "updated_at": stamp}
        if state in (JobState.COMPLETED, JobState.DEAD):
            fields["finished_at"] = stamp
        if error is not None:
            fields["last_error"] = error[:1000]
        key = self.key(job_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping=fields)
            pipe.expire(key, self._ttl_s)
            await pipe.execute()

    async def get(self, job_id: str) -> dict[str, Any] | None:
        raw = await self._redis.hgetall(self.key(job_id))
        if not raw:
            return None
        record: dict[str, Any] = {k.decode(): v.decode() for k, v in raw.items()}
        record["attempts"] = int(record.get("attempts", 0))
        for stamp in ("started_at", "updated_at", "finished_at"):
            if stamp in record:
                record[stamp] = float(record[stamp])
        return record
