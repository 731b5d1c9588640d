"""Cached answers of downstream GraphQL queries, per tenant: kept ``ttl_s`` (5 minutes, as the
world-time scheduler's design keeps campaigns and entities), dropped at once for a tenant when an
event says its world changed (``entity-modified``). One Redis hash per tenant: (service,
operation, variables) -> the answer and when it goes stale. Dropping a tenant's hash drops all
of its answers, whichever entity the event names: an entity's change may show in any query of
its campaign (its settlements listed, say).

A drop also moves the tenant's *generation*. An answer is stored only under the generation it
was read in, so a job that read the world before a drop cannot put its old answer back after."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from cronbus.streams.metrics import Metrics

# store an answer only if the tenant's generation is still the one it was read in
_PUT = """
if (redis.call('GET', KEYS[2]) or '0') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
return 1
"""
# forget each tenant's answers and move its generation (KEYS: answers, generation, ...); one
# command for a whole ingest step, however many tenants it names
_DROP = """
for i = 1, #KEYS, 2 do
  redis.call('DEL', KEYS[i])
  redis.call('INCR', KEYS[i + 1])
  redis.call('EXPIRE', KEYS[i + 1], ARGV[1])
end
return #KEYS / 2
"""
GENERATION_TTL_S = 86_400  # far longer than any read in flight


@dataclass(frozen=True)
class Lookup:
    """What the cache holds for a question (None: ask the service), and the generation asked in."""

    data: dict[str, Any] | None
    generation: bytes


class QueryCache:
    def __init__(self, redis: aioredis.Redis, *, namespace: str, ttl_s: float, metrics: Metrics,
                 clock: Callable[[], float] = time.time) -> None:
        self._redis = redis
        self._metrics = metrics
        self._namespace = namespace
        self.ttl_s = ttl_s
        self._clock = clock
        self._put = redis.register_script(_PUT)
        self._drop = redis.register_script(_DROP)

    def _keys(self, tenant_id: str) -> tuple[str, str]:
        base = f"{self._namespace}:query-cache:{tenant_id}"
        return base, f"{base}:generation"

    @staticmethod
    def _field(service: str, query: str, variables: dict[str, Any]) -> str:
        text = json.dumps([service, " ".join(query.split()), variables], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    async def get(self, tenant_id: str, service: str, query: str,
                  variables: dict[str, Any]) -> Lookup:
        """The cached answer (None when there is none or it went stale), counted hit or miss."""
        answers, generation = self._keys(tenant_id)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hget(answers, self._field(service, query, variables))
            pipe.get(generation)
            raw, seen = await pipe.execute()
        data = None
        if raw is not None:
            stale_at, data = json.loads(raw)
            data = data if stale_at > self._clock() else None
        self._metrics.query_cache.labels(service, "miss" if data is None else "hit").inc()
        return Lookup(data, seen or b"0")

    async def put(self, tenant_id: str, service: str, query: str, variables: dict[str, Any],
                  data: dict[str, Any], *, read_in: bytes) -> bool:
        """Keep an answer read in generation ``read_in``; False (not kept) after a drop since."""
        answers, generation = self._keys(tenant_id)
        kept = await self._put(keys=[answers, generation], args=[
            read_in, self._field(service, query, variables),
            json.dumps([self._clock() + self.ttl_s, data]), max(1, round(self.ttl_s))])
        return bool(kept)

    async def drop(self, tenant_ids: Iterable[str]) -> None:
        """Forget every answer cached for these tenants, and any read before now."""
        keys = [key for tenant_id in tenant_ids for key in self._keys(tenant_id)]
        if keys:
            await self._drop(keys=keys, args=[GENERATION_TTL_S])
