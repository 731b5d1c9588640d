"""The console's view of the job status store: a tenant's recent jobs (or every tenant's), the
jobs that changed since a moment, and a tenant's own queue counters.

The status store's writes keep these (clients/redis/job_status.py): ``<ns>:jobs-of:<tenant>``
and ``<ns>:jobs-all`` (sorted sets of job ids scored by their last change, bounded) and
``<ns>:queue-of:<tenant>`` (a hash ``<type>|<counter>`` -> total) and ``<ns>:active-of:<tenant>``
(a sorted set of ``<type>|<job id>`` in an attempt now, by start time).
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import redis.asyncio as aioredis

from cronbus.clients.redis.job_status import ACTIVE_STALE_S, COUNTED, JobStatusStore

# a state filter reads at most this many index entries per page asked (the index is bounded too)
SCAN_FACTOR = 20


class JobIndex:
    def __init__(self, client: aioredis.Redis, store: JobStatusStore, *, namespace: str) -> None:
        self._redis = client
        self._store = store
        self._namespace = namespace

    def index_key(self, tenant_id: str | None) -> str:
        """One tenant's index, or (None) every tenant's."""
        if tenant_id is None:
            return f"{self._namespace}:jobs-all"
        return f"{self._namespace}:jobs-of:{tenant_id}"

    def counters_key(self, tenant_id: str) -> str:
        return f"{self._namespace}:queue-of:{tenant_id}"

    async def page(self, tenant_id: str | None, *, state: str | None, offset: int, limit: int
                   ) -> tuple[list[dict[str, Any]], int | None]:
        """Up to ``limit`` jobs, newest change first, from position ``offset`` of the index (in
        ``state`` only, when given); and the offset of the next page (None: no more)."""
        key = self.index_key(tenant_id)
        found: list[dict[str, Any]] = []
        position = offset
        budget = limit * SCAN_FACTOR if state else limit
        while len(found) < limit and position < offset + budget:
            chunk = min(limit * 2 if state else limit, offset + budget - position)
            ids = [i.decode() for i in await self._redis.zrevrange(key, position, position + chunk - 1)]
            if not ids:
                return found, None
            records = await self._records(ids)
            for n, (job_id, record) in enumerate(zip(ids, records, strict=True)):
                if record is None or (state and record["state"] != state):
                    continue
                found.append({"job_id": job_id, **record})
                if len(found) == limit:
                    return found, position + n + 1
            position += len(ids)
        more = await self._redis.zcard(key) > position
        return found, position if more else None

    async def changed_since(self, tenant_id: str | None, since: float, *, limit: int = 100
                            ) -> list[dict[str, Any]]:
        """The jobs whose status changed after ``since`` (oldest change first, at most ``limit``)."""
        ids = [i.decode() for i in await self._redis.zrangebyscore(
            self.index_key(tenant_id), f"({since}", "+inf", start=0, num=limit)]
        records = await self._records(ids)
        return [{"job_id": job_id, **record}
                for job_id, record in zip(ids, records, strict=True) if record is not None]

    def active_key(self, tenant_id: str) -> str:
        return f"{self._namespace}:active-of:{tenant_id}"

    async def tenant_counts(self, tenant_id: str, job_types: list[str], *,
                            now: float | None = None) -> dict[str, dict[str, int]]:
        """Per job type, this tenant's jobs in an attempt now (``active``; one older than
        ``ACTIVE_STALE_S`` is a dead worker's, not counted) and its completed, failed (attempts)
        and dead-lettered totals."""
        stamp = time.time() if now is None else now
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(self.counters_key(tenant_id))
            pipe.zrangebyscore(self.active_key(tenant_id), stamp - ACTIVE_STALE_S, "+inf")
            raw, active = await pipe.execute()
        named = {k.decode(): int(v) for k, v in raw.items()}
        running = Counter(member.decode().split("|", 1)[0] for member in active)
        return {t: {"active": running.get(t, 0),
                    **{c: named.get(f"{t}|{c}", 0) for c in COUNTED.values()}} for t in job_types}

    async def _records(self, job_ids: list[str]) -> list[dict[str, Any] | None]:
        found = await self._store.get_many(job_ids)  # one round trip for the page
        return [found.get(job_id) for job_id in job_ids]
