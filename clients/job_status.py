"""Job status in Redis: one hash per job, kept for a TTL; counters per job type.

The completed state doubles as the idempotency record: a redelivered or replayed job
whose id is already completed is acknowledged without calling downstream again.

Per job type (``<ns>:queue:<type>``, a hash): ``completed``, ``failed`` (failed attempts) and
``dead_lettered`` totals, counted when an attempt finishes; ``<ns>:active:<type>`` (a sorted
set of job ids by start time) holds the jobs in an attempt now. An entry older than
``ACTIVE_STALE_S`` belongs to a worker that died mid-attempt and is not counted (the job is
redelivered and enters again under the same id).
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
if KEYS[2] then redis.call('ZADD', KEYS[2], ARGV[3], ARGV[6]) end
return attempts
"""

# Ends an attempt in one round trip: the job's hash, its type's counter, out of the active set.
# KEYS: the job's hash, its namespace's prefix; ARGV: ttl, job id, counter field, then the
# hash's field/value pairs.
_FINISH = """
local job_type = redis.call('HGET', KEYS[1], 'type')
for i = 4, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('EXPIRE', KEYS[1], ARGV[1])
if job_type then
  redis.call('ZREM', KEYS[2] .. ':active:' .. job_type, ARGV[2])
  if ARGV[3] ~= '' then redis.call('HINCRBY', KEYS[2] .. ':queue:' .. job_type, ARGV[3], 1) end
end
return job_type
"""

# the counter an attempt's end adds to, by the state it ends in
COUNTED = {"completed": "completed", "failed": "failed", "dead": "dead_lettered"}
# an attempt longer than this is a worker that died in it; its job is not counted active
ACTIVE_STALE_S = 900


class JobStatusStore:
    def __init__(self, client: aioredis.Redis, *, namespace: str, ttl_s: int) -> None:
        self._redis = client
        self._namespace = namespace
        self._ttl_s = ttl_s
        self._begin = client.register_script(_BEGIN_ATTEMPT)
        self._finish = client.register_script(_FINISH)

    def key(self, job_id: str) -> str:
        return f"{self._namespace}:job:{job_id}"

    def queue_key(self, job_type: str) -> str:
        return f"{self._namespace}:queue:{job_type}"

    def active_key(self, job_type: str) -> str:
        return f"{self._namespace}:active:{job_type}"

    async def begin_attempt(self, job: Job, *, now: float | None = None, force: bool = False) -> int:
        """Mark the job active and return its attempt number; 0 if it already completed
        (unless ``force``: a forced replay runs a completed job again)."""
        stamp = now if now is not None else time.time()
        return int(await self._begin(
            keys=[self.key(job.job_id), self.active_key(job.type.value)],
            args=[job.tenant_id, job.type.value, f"{stamp:.3f}", self._ttl_s, "1" if force else "0",
                  job.job_id],
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
        pairs = [part for name_value in fields.items() for part in name_value]
        await self._finish(keys=[self.key(job_id), self._namespace],
                           args=[self._ttl_s, job_id, COUNTED.get(state.value, ""), *pairs])

    async def queue_counts(self, job_types: list[str], *, now: float | None = None
                           ) -> dict[str, dict[str, int]]:
        """Per job type: active now, and completed, failed (attempts) and dead-lettered totals."""
        stamp = now if now is not None else time.time()
        async with self._redis.pipeline(transaction=False) as pipe:
            for job_type in job_types:
                pipe.hgetall(self.queue_key(job_type))
                pipe.zremrangebyscore(self.active_key(job_type), "-inf", stamp - ACTIVE_STALE_S)
                pipe.zcard(self.active_key(job_type))
            replies = await pipe.execute()
        counts: dict[str, dict[str, int]] = {}
        for n, job_type in enumerate(job_types):
            totals, _, active = replies[3 * n: 3 * n + 3]
            named = {k.decode(): int(v) for k, v in totals.items()}
            counts[job_type] = {"active": int(active), **{c: named.get(c, 0) for c in COUNTED.values()}}
        return counts

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
