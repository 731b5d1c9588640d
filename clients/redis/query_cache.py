"""Cached answers of downstream GraphQL queries, per tenant: kept ``ttl_s`` (5 minutes, as the
world-time scheduler's design keeps campaigns and entities), dropped at once for a tenant when an
event says its world changed (``entity-modified``). One Redis hash per tenant: (service,
operation, variables) -> the answer and when it goes stale. Dropping a tenant's hash drops all
of its answers, whichever entity the event names: an entity's change may show in any query of
its campaign (its settlements listed, say)."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable
from typing import Any

import redis.asyncio as aioredis

from cronbus.streams.metrics import Metrics


class QueryCache:
    def __init__(self, redis: aioredis.Redis, *, namespace: str, ttl_s: float, metrics: Metrics,
                 clock: Callable[[], float] = time.time) -> None:
        self._redis = redis
        self._metrics = metrics
        self._namespace = namespace
        self.ttl_s = ttl_s
        self._clock = clock

    def _key(self, tenant_id: str) -> str:
        return f"{self._namespace}:query-cache:{tenant_id}"

    @staticmethod
    def _field(service: str, query: str, variables: dict[str, Any]) -> str:
        text = json.dumps([service, " ".join(query.split()), variables], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    async def get(self, tenant_id: str, service: str, query: str,
                  variables: dict[str, Any]) -> dict[str, Any] | None:
        """The cached answer, or None when there is none or it went stale."""
        raw = await self._redis.hget(self._key(tenant_id), self._field(service, query, variables))
        data = None
        if raw is not None:
            stale_at, data = json.loads(raw)
            data = data if stale_at > self._clock() else None
        self._metrics.query_cache.labels(service, "miss" if data is None else "hit").inc()
        return data  # type: ignore[no-any-return]

    async def put(self, tenant_id: str, service: str, query: str, variables: dict[str, Any],
                  data: dict[str, Any]) -> None:
        key = self._key(tenant_id)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hset(key, self._field(service, query, variables),
                      json.dumps([self._clock() + self.ttl_s, data]))
            pipe.expire(key, max(1, round(self.ttl_s)))  # the hash goes with its last answer
            await pipe.execute()

    async def drop(self, tenant_ids: Iterable[str]) -> None:
        """Forget every answer cached for these tenants."""
        keys = [self._key(t) for t in tenant_ids]
        if keys:
            await self._redis.delete(*keys)
