"""World clocks as the API and the CLI read them: one Redis hash per tenant, written by ingest
after its clock changelog has the change (the changelog is the truth; this is its read side)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import redis.asyncio as aioredis


class WorldClockView:
    def __init__(self, redis: aioredis.Redis, *, namespace: str) -> None:
        self._redis = redis
        self._namespace = namespace

    def _key(self, tenant_id: str) -> str:
        return f"{self._namespace}:world-clock:{tenant_id}"

    @property
    def campaigns_key(self) -> str:
        """A set of the tenants with a clock (the console lists them for the system tenant)."""
        return f"{self._namespace}:world-clocks"

    async def put_many(self, clocks: Iterable[Mapping[str, Any]]) -> None:
        """Store clocks (``tenant_id`` and their fields), all in one round trip."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for clock in clocks:
                pipe.hset(self._key(clock["tenant_id"]),
                          mapping={k: str(v) for k, v in clock.items()})
                pipe.sadd(self.campaigns_key, clock["tenant_id"])
            await pipe.execute()

    async def campaigns(self, *, offset: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        """One page of every tenant's clock, by tenant id, and how many there are (a clock
        written before this list was kept shows once it moves again)."""
        tenants = sorted(t.decode() for t in await self._redis.smembers(self.campaigns_key))
        page = tenants[offset:offset + limit]
        async with self._redis.pipeline(transaction=False) as pipe:
            for tenant in page:
                pipe.hgetall(self._key(tenant))
            stored = await pipe.execute()
        clocks = [_clock(raw) for raw in stored if raw]
        return clocks, len(tenants)

    async def get(self, tenant_id: str) -> dict[str, Any] | None:
        stored = await self._redis.hgetall(self._key(tenant_id))
        return _clock(stored) if stored else None


def _clock(stored: Mapping[bytes, bytes]) -> dict[str, Any]:
    clock: dict[str, Any] = {k.decode(): v.decode() for k, v in stored.items()}
    clock["advances"] = int(clock["advances"])
    return clock
