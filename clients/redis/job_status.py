"""Job status in Redis: one hash per job, kept for a TTL; counters per job type.

The completed state doubles as the idempotency record: a redelivered or replayed job
whose id is already completed is acknowledged without calling downstream again.

Per job type (``<ns>:queue:<type>``, a hash): ``completed``, ``failed`` (failed attempts) and
``dead_lettered`` totals, counted when an attempt finishes; ``<ns>:active:<type>`` (a sorted
set of job ids by start time) holds the jobs in an attempt now. An entry older than
``ACTIVE_STALE_S`` belongs to a worker that died mid-attempt and is not counted (the job is
redelivered and enters again under the same id).

A job run by a handler keeps its finished steps beside its status (``<ns>:steps:<job id>``, a
hash: step -> its JSON result, same TTL), so a retry resumes after the last finished step, and
its progress in the status hash (``progress``, JSON), and what it produced (``ctx.result``: one
field ``result:<name>`` each, JSON, so results given in several calls add up), read back as
``result``.

A job waiting for its rate-limit window has ``due_at`` (when the window has room) and
``waiting_for`` (the limit) in its hash, written by :mod:`cronbus.clients.redis.rate_limits`.

For the console, the same writes keep each tenant's recent job ids (``<ns>:jobs-of:<tenant>``,
and ``<ns>:jobs-all`` of every tenant; sorted sets scored by the last change, the newest
``JOB_INDEX_MAX`` kept) and each tenant's counters (``<ns>:queue-of:<tenant>``, a hash:
``<type>|completed``, ``<type>|failed``, ``<type>|dead_lettered``); read by
:mod:`cronbus.clients.redis.job_index`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis

from cronbus.streams.jobs import Job, JobState

__all__ = ["BatchedJobStatus", "JobState", "JobStatusStore"]

# a begin: (job, force, at[, where its record is: topic/partition/offset]); an end: (job id,
# state, error, at[, the downstream's HTTP status])
Begin = tuple[Job, bool, float] | tuple[Job, bool, float, str | None]
Finish = tuple[str, JobState, str | None, float] | tuple[str, JobState, str | None, float, int | None]


# the most recent jobs the console lists per tenant (and of all tenants): its index is bounded
JOB_INDEX_MAX = 10_000
# the failed attempts a job's attempt log keeps (the newest)
ATTEMPT_LOG_MAX = 50

# Begins and ends many attempts in one round trip, begins first. A begin, unless the job already
# completed (and is not forced), counts the attempt and marks the job active; it answers the
# attempt number, or 0 for a completed job. An end writes the job's hash, adds to its type's
# counter and takes it out of the active set. One script call for a whole batch: a pipeline of
# one call per write costs the worker more CPU than the writes cost Redis, and so does an
# argument per field (redis-py packs each), hence fields joined by \x1f, the job id last (the
# one field that may hold anything but the error, which is an argument of its own).
# ARGV: namespace, ttl, number of begins; then per begin "tenant id|type|stamp|force (1/0)|record
# ('' unknown, else topic/partition/offset)|job id"; then per end "state|counter field ('' none)|
# stamp|finished (1/0)|the downstream's HTTP status ('' none)|job id" and its error ('' none,
# else '=' .. error).
_WRITE_BATCH = """
local function fields(s)
  local out, from = {}, 1
  for k = 1, 5 do
    local at = string.find(s, '\\31', from, true)
    out[k] = string.sub(s, from, at - 1)
    from = at + 1
  end
  out[6] = string.sub(s, from)
  return out
end
local ns, ttl, begins = ARGV[1], ARGV[2], tonumber(ARGV[3])
local attempts = {}
-- the console's indexes and tenants' active sets the begins added to: trimmed (the indexes) and
-- given their TTL once each, after the begins, not once per job (the same sets and TTLs)
local indexes, active_of = {}, {}
for i = 4, 3 + begins do
  local f = fields(ARGV[i])
  local tenant, job_type, stamp, force, record_at, id = f[1], f[2], f[3], f[4], f[5], f[6]
  local key = ns .. ':job:' .. id
  if force ~= '1' and redis.call('HGET', key, 'state') == 'completed' then
    attempts[#attempts + 1] = 0
  else
    attempts[#attempts + 1] = redis.call('HINCRBY', key, 'attempts', 1)
    redis.call('HSET', key, 'state', 'active', 'tenant_id', tenant, 'type', job_type,
               'started_at', stamp, 'updated_at', stamp)
    -- the console's job page: where its record is (its payload and cause), its first start
    if record_at ~= '' then redis.call('HSETNX', key, 'record_at', record_at) end
    redis.call('HSETNX', key, 'first_started_at', stamp)
    redis.call('EXPIRE', key, ttl)
    redis.call('ZADD', ns .. ':active:' .. job_type, stamp, id)
    -- a tenant's jobs in an attempt now (the console's per-tenant active count)
    redis.call('ZADD', ns .. ':active-of:' .. tenant, stamp, job_type .. '|' .. id)
    active_of[ns .. ':active-of:' .. tenant] = true
    -- the console's job lists (clients/redis/job_index.py): by last change, bounded
    for _, index in ipairs({ns .. ':jobs-of:' .. tenant, ns .. ':jobs-all'}) do
      redis.call('ZADD', index, stamp, id)
      indexes[index] = true
    end
  end
end
for index in pairs(indexes) do
  redis.call('ZREMRANGEBYRANK', index, 0, -JOB_INDEX_MAX - 1)
  redis.call('EXPIRE', index, ttl)
end
for key in pairs(active_of) do redis.call('EXPIRE', key, ttl) end
for i = 4 + begins, #ARGV, 2 do
  local f = fields(ARGV[i])
  local state, counter, stamp, finished, answer, id = f[1], f[2], f[3], f[4], f[5], f[6]
  local err = ARGV[i + 1]
  local key = ns .. ':job:' .. id
  local known = redis.call('HMGET', key, 'type', 'tenant_id')
  local job_type, tenant = known[1], known[2]
  if err ~= '' and (state == 'retry_due' or state == 'dead_lettered') then
    -- a failed attempt's line in the job's attempt log (the console's job page), bounded
    local started = redis.call('HGET', key, 'started_at') or ''
    local attempt = redis.call('HGET', key, 'attempts') or ''
    local log = ns .. ':attempts:' .. id
    redis.call('RPUSH', log, attempt .. '\\31' .. started .. '\\31' .. stamp .. '\\31' .. state
               .. '\\31' .. answer .. '\\31' .. string.sub(err, 2))
    redis.call('LTRIM', log, -ATTEMPT_LOG_MAX, -1)
    redis.call('EXPIRE', log, ttl)
  end
  local written = {'state', state, 'updated_at', stamp}
  if finished == '1' then
    written[#written + 1] = 'finished_at'
    written[#written + 1] = stamp
  end
  if err ~= '' then
    written[#written + 1] = 'last_error'
    written[#written + 1] = string.sub(err, 2)
  end
  redis.call('HSET', key, unpack(written))
  redis.call('EXPIRE', key, ttl)
  if job_type then
    redis.call('ZREM', ns .. ':active:' .. job_type, id)
    if counter ~= '' then redis.call('HINCRBY', ns .. ':queue:' .. job_type, counter, 1) end
  end
  if tenant then
    if job_type then redis.call('ZREM', ns .. ':active-of:' .. tenant, job_type .. '|' .. id) end
    redis.call('ZADD', ns .. ':jobs-of:' .. tenant, stamp, id)
    redis.call('ZADD', ns .. ':jobs-all', stamp, id)
    if job_type and counter ~= '' then
      redis.call('HINCRBY', ns .. ':queue-of:' .. tenant, job_type .. '|' .. counter, 1)
    end
  end
end
return attempts
""".replace("JOB_INDEX_MAX", str(JOB_INDEX_MAX)).replace("ATTEMPT_LOG_MAX", str(ATTEMPT_LOG_MAX))

# the counter an attempt's end adds to, by the state it ends in
COUNTED = {JobState.COMPLETED: "completed", JobState.RETRY_DUE: "failed",
           JobState.DEAD_LETTERED: "dead_lettered"}
# the states that end a job: they stamp ``finished_at``
FINAL = frozenset(state for state in JobState if state.done)
# an attempt longer than this is a worker that died in it; its job is not counted active
ACTIVE_STALE_S = 900
# a field of a job's status hash holding one field of its result (``ctx.result``)
RESULT_PREFIX = "result:"


class JobStatusStore:
    def __init__(self, client: aioredis.Redis, *, namespace: str, ttl_s: int) -> None:
        self._redis = client
        self._namespace = namespace
        self._ttl_s = ttl_s
        self._write = client.register_script(_WRITE_BATCH)

    def key(self, job_id: str) -> str:
        return f"{self._namespace}:job:{job_id}"

    def queue_key(self, job_type: str) -> str:
        return f"{self._namespace}:queue:{job_type}"

    def active_key(self, job_type: str) -> str:
        return f"{self._namespace}:active:{job_type}"

    async def begin_attempt(self, job: Job, *, now: float | None = None, force: bool = False,
                            record_at: str | None = None) -> int:
        """Mark the job active and return its attempt number; 0 if it already completed
        (unless ``force``: a forced replay runs a completed job again). ``record_at``
        (``topic/partition/offset``) is where its record is: its first is kept."""
        stamp = now if now is not None else time.time()
        (attempt,) = await self.write_batch([(job, force, stamp, record_at)], [])
        return attempt

    async def finish(
        self, job_id: str, state: JobState, *, error: str | None = None, now: float | None = None,
        answer: int | None = None,
    ) -> None:
        """End an attempt in ``state``; a failed one (``error``) is kept in the job's attempt
        log with ``answer``, the downstream's HTTP status (None: no answer)."""
        await self.write_batch([], [(job_id, state, error, now if now is not None else time.time(),
                                     answer)])

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

    async def write_batch(self, begins: Sequence[Begin], finishes: Sequence[Finish]) -> list[int]:
        """Many ``begin_attempt`` (job, force, at[, record at]) and ``finish`` (job id, state,
        error, at[, HTTP status]) in one script call, begins first; returns the begins'
        attempt numbers."""
        args: list[str | int] = [self._namespace, self._ttl_s, len(begins)]
        for job, force, at, *where in begins:
            args.append(f"{job.tenant_id}\x1f{job.type}\x1f{at:.3f}\x1f{'1' if force else '0'}"
                        f"\x1f{(where[0] or '') if where else ''}\x1f{job.job_id}")
        for job_id, state, error, at, *answer in finishes:
            status = answer[0] if answer and answer[0] is not None else ""
            args += (f"{state.value}\x1f{COUNTED.get(state.value, '')}\x1f{at:.3f}"
                     f"\x1f{'1' if state in FINAL else '0'}\x1f{status}\x1f{job_id}",
                     "" if error is None else "=" + error[:1000])
        attempts = await self._write(keys=[], args=args)
        return [int(a) for a in attempts]

    # the steps of a job run by a handler ---------------------------------------------------

    def steps_key(self, job_id: str) -> str:
        return f"{self._namespace}:steps:{job_id}"

    async def finished_steps(self, job_id: str) -> dict[str, Any]:
        """Each step the job finished (in any attempt) and what it returned."""
        raw = await self._redis.hgetall(self.steps_key(job_id))
        return {step.decode(): json.loads(result) for step, result in raw.items()}

    async def step_finished(self, job_id: str, step: str, result: Any) -> None:
        """Keep a finished step and its (JSON) result: a later attempt does not repeat it."""
        key = self.steps_key(job_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, step, json.dumps(result, separators=(",", ":")))
            pipe.expire(key, self._ttl_s)
            await pipe.execute()

    async def forget_steps(self, job_id: str) -> None:
        """A forced replay runs every step again."""
        await self._redis.delete(self.steps_key(job_id))

    async def set_progress(self, job_id: str, progress: dict[str, Any]) -> None:
        await self._redis.hset(self.key(job_id), "progress",
                               json.dumps(progress, separators=(",", ":")))

    async def set_result(self, job_id: str, result: dict[str, Any]) -> None:
        """Keep fields of what the job produced beside its status (same hash, same TTL)."""
        if result:
            await self._redis.hset(self.key(job_id), mapping={
                f"{RESULT_PREFIX}{name}": json.dumps(value, separators=(",", ":"))
                for name, value in result.items()})

    async def get(self, job_id: str) -> dict[str, Any] | None:
        return _status_record(await self._redis.hgetall(self.key(job_id)))

    def attempts_key(self, job_id: str) -> str:
        return f"{self._namespace}:attempts:{job_id}"

    async def attempt_log(self, job_id: str) -> list[dict[str, Any]]:
        """The job's failed attempts, oldest first: attempt, started_at, ended_at, state, the
        downstream's HTTP status (None: no answer) and the error."""
        lines = await self._redis.lrange(self.attempts_key(job_id), 0, -1)
        return [_attempt_line(line.decode(errors="replace")) for line in lines]

    async def get_many(self, job_ids: list[str]) -> dict[str, dict[str, Any]]:
        """The status of each of these jobs that has one, in one round trip."""
        if not job_ids:
            return {}
        async with self._redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hgetall(self.key(job_id))
            replies = await pipe.execute()
        found = {job_id: _status_record(raw) for job_id, raw in zip(job_ids, replies, strict=True)}
        return {job_id: record for job_id, record in found.items() if record is not None}


def _attempt_line(line: str) -> dict[str, Any]:
    attempt, started, ended, state, status, error = line.split("\x1f", 5)
    return {"attempt": int(attempt) if attempt.isdigit() else None,
            "started_at": float(started) if started else None,
            "ended_at": float(ended) if ended else None, "state": state,
            "status": int(status) if status.isdigit() else None, "error": error}


def _status_record(raw: dict[bytes, bytes]) -> dict[str, Any] | None:
    """A job's status hash as a record (None when there is none)."""
    if not raw:
        return None
    record: dict[str, Any] = {k.decode(): v.decode() for k, v in raw.items()}
    result = {name.removeprefix(RESULT_PREFIX): json.loads(record.pop(name))
              for name in [n for n in record if n.startswith(RESULT_PREFIX)]}
    if result:
        record["result"] = result
    record["state"] = JobState.read(record.get("state")).value  # former names too
    record["attempts"] = int(record.get("attempts", 0))
    if "progress" in record:
        record["progress"] = json.loads(record["progress"])
    for stamp in ("started_at", "first_started_at", "updated_at", "finished_at", "due_at"):
        if stamp in record:
            record[stamp] = float(record[stamp])
    return record


class BatchedJobStatus:
    """:class:`JobStatusStore`'s ``begin_attempt`` and ``finish``, with the calls made while a
    round trip is under way sent together in one script call: at 50 jobs in flight one Redis round
    trip carries dozens of status writes instead of one each.

    Each call still waits for its own write (a job counts as done only once its status is
    kept), and an error reaches every caller of the batch it was in.

    Up to ``round_trips`` batches are under way at once: a write made while one is waiting for
    Redis goes in the next at once instead of waiting for that answer first (a begin waits for
    its batch inside the job's slot, so this wait bounds a worker's jobs per second). A job's
    writes stay in order: its end is written only after its begin was answered.
    """

    def __init__(self, store: JobStatusStore, *, max_batch: int = 1000,
                 round_trips: int = 2) -> None:
        self.store = store
        self._max_batch = max_batch
        self._round_trips = round_trips
        self._begins: list[tuple[Job, bool, float, str | None, asyncio.Future[int]]] = []
        self._finishes: list[tuple[str, JobState, str | None, float, int | None,
                                   asyncio.Future[None]]] = []
        self._gathering = False  # a batch task is about to take the writes made so far
        self._in_flight = 0  # batches sent, their answer not back yet

    async def begin_attempt(self, job: Job, *, force: bool = False,
                            record_at: str | None = None) -> int:
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._begins.append((job, force, time.time(), record_at, future))
        self._kick()
        return await future

    async def finish(self, job_id: str, state: JobState, *, error: str | None = None,
                     answer: int | None = None) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._finishes.append((job_id, state, error, time.time(), answer, future))
        self._kick()
        await future

    async def get(self, job_id: str) -> dict[str, Any] | None:
        return await self.store.get(job_id)

    def _kick(self) -> None:
        # a new batch starts gathering unless one is gathering now or every round trip allowed
        # is under way (the first to come back then takes what came meanwhile)
        if not self._gathering and self._in_flight < self._round_trips:
            self._gathering = True
            asyncio.get_running_loop().create_task(self._flush_all())

    async def _flush_all(self) -> None:
        # no extra loop turn to gather: the writes made before this task's first step (this
        # loop turn's and the next's up to it) are the batch; a turn more made every job wait
        # one more turn of a busy loop for its begin, inside its slot
        self._gathering = False
        while self._begins or self._finishes:
            begins, self._begins = self._begins[:self._max_batch], self._begins[self._max_batch:]
            finishes, self._finishes = (self._finishes[:self._max_batch],
                                        self._finishes[self._max_batch:])
            self._in_flight += 1
            try:
                attempts = await self.store.write_batch(
                    [(job, force, at, where) for job, force, at, where, _ in begins],
                    [(job_id, state, error, at, answer)
                     for job_id, state, error, at, answer, _ in finishes],
                )
            except Exception as exc:
                for *_, future in (*begins, *finishes):
                    if not future.done():
                        future.set_exception(exc)
                continue
            finally:
                self._in_flight -= 1
            for (*_, future), attempt in zip(begins, attempts, strict=True):
                if not future.done():
                    future.set_result(attempt)
            for *_, done in finishes:
                if not done.done():
                    done.set_result(None)
            if self._gathering:
                return  # a batch is gathering: it takes what came meanwhile
