"""The schedules a job keeps in step with something outside cronbus (a campaign's settlements,
say), per tenant and group: what was written last, so the next run writes only what changed and
removes what is no longer wanted. One Redis hash per (tenant, group): schedule id -> its JSON.
Kept without expiry, as long as the schedules themselves."""

from __future__ import annotations

import redis.asyncio as aioredis

from cronbus.streams.schedules import Schedule


class KeptSchedules:
    def __init__(self, redis: aioredis.Redis, *, namespace: str) -> None:
        self._redis = redis
        self._namespace = namespace

    def _key(self, tenant_id: str, group: str) -> str:
        return f"{self._namespace}:kept-schedules:{tenant_id}:{group}"

    async def get(self, tenant_id: str, group: str) -> dict[str, Schedule]:
        stored = await self._redis.hgetall(self._key(tenant_id, group))
        return {sid.decode(): Schedule.model_validate_json(raw) for sid, raw in stored.items()}

    async def put(self, tenant_id: str, group: str, schedules: dict[str, Schedule]) -> None:
        """Replace the group's schedules with ``schedules`` at once."""
        key = self._key(tenant_id, group)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            if schedules:
                pipe.hset(key, mapping={sid: s.encode() for sid, s in schedules.items()})
            await pipe.execute()
