"""Run history in Redis: the latest fired runs of each schedule, one bounded list per schedule.

Whoever emits a schedule's tick (the ticker, or the API for a manual run) records it here
after the broker has it; the outcome of each run is its job's status
(:class:`cronbus.clients.redis.job_status.JobStatusStore`), read under the run's deterministic job id.
Beside each history, the job ids of the schedule's backfilled runs, so a backfill of a range
sends no fire time twice.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import redis.asyncio as aioredis

from cronbus.streams.events import CronTick
from cronbus.streams.schedule_runs import FiredRun

# Records a batch in one call: a ticker records thousands of runs a second, and three commands
# a run through a client pipeline cost more than firing them (their replies parsed one by one).
# KEYS: each run's list; ARGV: kept, ttl, then each run's JSON.
_RECORD_BATCH = """
local kept, ttl = tonumber(ARGV[1]), tonumber(ARGV[2])
for i, key in ipairs(KEYS) do
  redis.call('LPUSH', key, ARGV[i + 2])
  redis.call('LTRIM', key, 0, kept - 1)
  redis.call('EXPIRE', key, ttl)
end
return #KEYS
"""


# Backfilled runs: into the run history (the newest ``kept`` of them) and into the schedule's
# sorted set of backfilled job ids, scored by when they were sent; members older than the job
# status TTL are dropped (past it the processor no longer knows those jobs either).
# KEYS: the run list, the backfilled set; ARGV: kept, ttl, now, cutoff, then pairs of
# (job id, run JSON or "" when the run is not to be listed).
_RECORD_BACKFILL = """
local kept, ttl = tonumber(ARGV[1]), tonumber(ARGV[2])
for i = 5, #ARGV, 2 do
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[i])
  if ARGV[i + 1] ~= '' then redis.call('LPUSH', KEYS[1], ARGV[i + 1]) end
end
redis.call('LTRIM', KEYS[1], 0, kept - 1)
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[4])
redis.call('EXPIRE', KEYS[2], ttl)
return #ARGV
"""

# Which of these job ids were backfilled since the cutoff, and when: [id, score, id, score, ...].
# KEYS: the backfilled set; ARGV: cutoff, then the job ids. (ZMSCORE would need Redis 6.2.)
_BACKFILLED = """
local cutoff, found = tonumber(ARGV[1]), {}
for i = 2, #ARGV do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) >= cutoff then
    found[#found + 1] = ARGV[i]
    found[#found + 1] = score
  end
end
return found
"""


# A manual run's first fire time under its idempotency key: set once, then read back by retries.
# KEYS: the claim; ARGV: the fire time (ISO), ttl. Answers the claim's fire time.
_CLAIM_MANUAL = """
redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', tonumber(ARGV[2]))
return redis.call('GET', KEYS[1])
"""

# runs per script call: one call holds Redis for about a millisecond per thousand runs
RECORD_SLICE = 1000


class RunLog:
    def __init__(self, client: aioredis.Redis, *, namespace: str, kept: int, ttl_s: int) -> None:
        self._redis = client
        self._namespace = namespace
        self.kept = kept
        self._ttl_s = ttl_s
        self._record_batch = client.register_script(_RECORD_BATCH)
        self._record_backfill = client.register_script(_RECORD_BACKFILL)
        self._backfilled = client.register_script(_BACKFILLED)
        self._claim_manual = client.register_script(_CLAIM_MANUAL)

    def key(self, tenant_id: str, schedule_id: str) -> str:
        return f"{self._namespace}:schedule-runs:{tenant_id}/{schedule_id}"

    async def record(self, tick: CronTick, *, now: float | None = None) -> FiredRun:
        """Keep ``tick`` as the schedule's newest run (the oldest beyond ``kept`` are dropped)."""
        run = FiredRun.of_tick(tick, now if now is not None else time.time())
        await self.record_entries([(self.key(tick.tenant_id, tick.schedule_id), run.encode())])
        return run

    async def record_entries(self, entries: list[tuple[str, str]]) -> None:
        """Record a batch of (run list key, run as :meth:`FiredRun.encode` spells it) in one
        round trip (the ticker, after the broker has their ticks: it spells its runs itself,
        thousands a second)."""
        for start in range(0, len(entries), RECORD_SLICE):
            part = entries[start:start + RECORD_SLICE]
            await self._record_batch(keys=[key for key, _ in part],
                                     args=[self.kept, self._ttl_s, *(run for _, run in part)])

    async def recent(self, tenant_id: str, schedule_id: str, count: int) -> list[FiredRun]:
        """The newest ``count`` runs, newest first."""
        raw = await self._redis.lrange(self.key(tenant_id, schedule_id), 0, count - 1)
        return [FiredRun.from_dict(json.loads(item)) for item in raw]

    async def latest(self, tenant_id: str, schedule_ids: list[str]) -> dict[str, FiredRun]:
        """The newest run of each of these schedules that has run, in one round trip."""
        if not schedule_ids:
            return {}
        async with self._redis.pipeline(transaction=False) as pipe:
            for schedule_id in schedule_ids:
                pipe.lindex(self.key(tenant_id, schedule_id), 0)
            replies = await pipe.execute()
        return {schedule_id: FiredRun.from_dict(json.loads(raw))
                for schedule_id, raw in zip(schedule_ids, replies, strict=True) if raw}

    def manual_key(self, run_id: str) -> str:
        return f"{self._namespace}:schedule-manual:{run_id}"

    async def claim_manual(self, run_id: str, fire_at: datetime) -> datetime:
        """The fire time of the manual run ``run_id`` (its id comes from the schedule and the
        caller's idempotency key): ``fire_at`` if this is the first request for it, else the
        first request's, kept as long as job statuses (a retry then says the same time)."""
        first = await self._claim_manual(keys=[self.manual_key(run_id)],
                                         args=[fire_at.astimezone(UTC).isoformat(), self._ttl_s])
        return datetime.fromisoformat(first.decode() if isinstance(first, bytes) else str(first))

    async def find(self, tenant_id: str, schedule_id: str, run_id: str) -> FiredRun | None:
        """The run ``run_id`` if the schedule's history still holds it (one of the latest
        ``kept``)."""
        for run in await self.recent(tenant_id, schedule_id, self.kept):
            if run.run_id == run_id:
                return run
        return None

    def backfilled_key(self, tenant_id: str, schedule_id: str) -> str:
        return f"{self._namespace}:schedule-backfilled:{tenant_id}/{schedule_id}"

    async def backfilled(self, tenant_id: str, schedule_id: str, job_ids: list[str], *,
                         now: float | None = None) -> dict[str, float]:
        """Which of these jobs a backfill sent within the job status TTL: job id -> when.

        Job ids, not run ids: a job id also names the job type, so a schedule deleted and made
        again under its id with another job type backfills anew, while with the same type it
        would send jobs the processor skips as done."""
        if not job_ids:
            return {}
        cutoff = (now if now is not None else time.time()) - self._ttl_s
        found = await self._backfilled(keys=[self.backfilled_key(tenant_id, schedule_id)],
                                       args=[cutoff, *job_ids])
        pairs = [item.decode() if isinstance(item, bytes) else str(item) for item in found]
        return {pairs[i]: float(pairs[i + 1]) for i in range(0, len(pairs), 2)}

    async def record_backfill(self, tenant_id: str, schedule_id: str, runs: list[FiredRun], *,
                              now: float | None = None) -> None:
        """Keep backfilled ``runs`` (sent, in fire-time order) as backfilled, and the newest
        ``kept`` of them in the run history; one round trip."""
        if not runs:
            return
        at = now if now is not None else time.time()
        listed = {run.run_id for run in runs[-self.kept:]}  # older ones would be trimmed at once
        args: list[str | float | int] = [self.kept, self._ttl_s, at, at - self._ttl_s]
        for run in runs:
            args += [run.job_id, json.dumps(run.as_dict()) if run.run_id in listed else ""]
        await self._record_backfill(keys=[self.key(tenant_id, schedule_id),
                                          self.backfilled_key(tenant_id, schedule_id)],
                                    args=args)

    async def forget(self, tenant_id: str, schedule_id: str) -> None:
        """Drop the run history. Which jobs were backfilled is kept (until the job status TTL):
        a schedule made again under this id and job type gives those runs the same job ids,
        which the processor skips as done, so a backfill reports them as ``already``."""
        await self._redis.delete(self.key(tenant_id, schedule_id))
