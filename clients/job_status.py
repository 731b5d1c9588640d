"""Job status in Redis: one hash per job, kept for a TTL.

The completed state doubles as the idempotency record: a redelivered or replayed job
whose id is already completed is acknowledged without calling downstream again.
"""

from __future__ import annotations

import asyncio
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

    def _finish_fields(self, state: JobState, error: str | None, stamp_s: float) -> dict[str, str]:
        stamp = f"{stamp_s:.3f}"
        fields: dict[str, str] = {"state": state.value, "updated_at": stamp}
        if state in (JobState.COMPLETED, JobState.DEAD):
            fields["finished_at"] = stamp
        if error is not None:
            fields["last_error"] = error[:1000]
        return fields

    async def write_batch(
        self, begins: list[tuple[Job, bool, float]],
        finishes: list[tuple[str, JobState, str | None, float]],
    ) -> list[int]:
        """Many ``begin_attempt`` (job, force, at) and ``finish`` (job id, state, error, at) in
        one pipeline; returns the attempt numbers of the begins, in order."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for job, force, at in begins:
                await self._begin(
                    keys=[self.key(job.job_id)],
                    args=[job.tenant_id, job.type.value, f"{at:.3f}", self._ttl_s,
                          "1" if force else "0"],
                    client=pipe,
                )
            for job_id, state, error, at in finishes:
                key = self.key(job_id)
                pipe.hset(key, mapping=self._finish_fields(state, error, at))
                pipe.expire(key, self._ttl_s)
            results = await pipe.execute()
        return [int(r) for r in results[:len(begins)]]

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


class BatchedJobStatus:
    """:class:`JobStatusStore`'s ``begin_attempt`` and ``finish``, with the calls made while a
    round trip is under way sent together in one pipeline: at 50 jobs in flight one Redis round
    trip carries dozens of status writes instead of one each.

    Each call still waits for its own write (a job counts as done only once its status is
    kept), and an error reaches every caller of the batch it was in.
    """

    def __init__(self, store: JobStatusStore, *, max_batch: int = 1000) -> None:
        self.store = store
        self._max_batch = max_batch
        self._begins: list[tuple[Job, bool, float, asyncio.Future[int]]] = []
        self._finishes: list[tuple[str, JobState, str | None, float, asyncio.Future[None]]] = []
        self._flushing = False

    async def begin_attempt(self, job: Job, *, force: bool = False) -> int:
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._begins.append((job, force, time.time(), future))
        self._kick()
        return await future

    async def finish(self, job_id: str, state: JobState, *, error: str | None = None) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._finishes.append((job_id, state, error, time.time(), future))
        self._kick()
        await future

    async def get(self, job_id: str) -> dict[str, Any] | None:
        return await self.store.get(job_id)

    def _kick(self) -> None:
        if not self._flushing:
            self._flushing = True
            asyncio.get_running_loop().create_task(self._flush_all())

    async def _flush_all(self) -> None:
        try:
            await asyncio.sleep(0)  # let the callers of this loop turn join the batch
            while self._begins or self._finishes:
                begins, self._begins = self._begins[:self._max_batch], self._begins[self._max_batch:]
                finishes, self._finishes = (self._finishes[:self._max_batch],
                                            self._finishes[self._max_batch:])
                try:
                    attempts = await self.store.write_batch(
                        [(job, force, at) for job, force, at, _ in begins],
                        [(job_id, state, error, at) for job_id, state, error, at, _ in finishes],
                    )
                except Exception as exc:
                    for *_, future in (*begins, *finishes):
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (*_, future), attempt in zip(begins, attempts, strict=True):
                    if not future.done():
                        future.set_result(attempt)
                for *_, done in finishes:
                    if not done.done():
                        done.set_result(None)
        finally:
            self._flushing = False
