"""Run history in Redis: the latest fired runs of each schedule, one bounded list per schedule.

Whoever emits a schedule's tick (the ticker, or the API for a manual run) records it here
after the broker has it; the outcome of each run is its job's status
(:class:`cronbus.clients.redis.job_status.JobStatusStore`), read under the run's deterministic job id.
"""

from __future__ import annotations

import json
import time

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


# runs per script call: one call holds Redis for about a millisecond per thousand runs
RECORD_SLICE = 1000


class RunLog:
    def __init__(self, client: aioredis.Redis, *, namespace: str, kept: int, ttl_s: int) -> None:
        self._redis = client
        self._namespace = namespace
        self.kept = kept
        self._ttl_s = ttl_s
        self._record_batch = client.register_script(_RECORD_BATCH)

    def key(self, tenant_id: str, schedule_id: str) -> str:
        return f"{self._namespace}:schedule-runs:{tenant_id}/{schedule_id}"

    async def record(self, tick: CronTick, *, now: float | None = None) -> FiredRun:
        """Keep ``tick`` as the schedule's newest run (the oldest beyond ``kept`` are dropped)."""
        run = FiredRun.of_tick(tick, now if now is not None else time.time())
        await self.record_many([(tick.tenant_id, tick.schedule_id, run)])
        return run

    async def record_many(self, runs: list[tuple[str, str, FiredRun]]) -> None:
        """Record a batch of (tenant, schedule id, run) in one round trip (the ticker, after the
        broker has their ticks)."""
        for start in range(0, len(runs), RECORD_SLICE):
            part = runs[start:start + RECORD_SLICE]
            await self._record_batch(
                keys=[self.key(tenant_id, schedule_id) for tenant_id, schedule_id, _ in part],
                args=[self.kept, self._ttl_s, *(json.dumps(run.as_dict()) for _, _, run in part)])

    async def recent(self, tenant_id: str, schedule_id: str, count: int) -> list[FiredRun]:
        """The newest ``count`` runs, newest first."""
        raw = await self._redis.lrange(self.key(tenant_id, schedule_id), 0, count - 1)
        return [FiredRun.from_dict(json.loads(item)) for item in raw]

    async def forget(self, tenant_id: str, schedule_id: str) -> None:
        await self._redis.delete(self.key(tenant_id, schedule_id))
