"""The ticker's fire states in Redis, read by the schedules API.

A ticker keeps each schedule's fire state (up to when everything is decided, how many ticks it
made, its previous run) in one hash per partition of ``schedules``:
``<namespace>:ticker:<app id>:<partition>``, field: the schedule's key. The ticker writes them
(agents/schedules/ticker.py, once the broker has the ticks); the API reads them to say how many
times a schedule fired and whether its ``limit`` is reached, from the very count the ticker
holds the limit to.
"""

from __future__ import annotations

import redis.asyncio as aioredis


def fire_states_key(namespace: str, app_id: str, partition: int) -> str:
    """The hash of one partition's fire states (the ticker's and the API's one spelling)."""
    return f"{namespace}:ticker:{app_id}:{partition}"


class FireStates:
    """Reads fire states as the ticker stored them (raw: the ticker's rules decode them)."""

    def __init__(self, client: aioredis.Redis, *, namespace: str, app_id: str) -> None:
        self._redis = client
        self._namespace = namespace
        self._app_id = app_id

    async def get_many(self, places: list[tuple[int, bytes]]) -> list[bytes | None]:
        """The stored state of each (partition, schedule key), in order; None where there is
        none (the schedule has not been taken on by a ticker yet). One round trip."""
        if not places:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for partition, key in places:
                pipe.hget(fire_states_key(self._namespace, self._app_id, partition), key)
            replies: list[bytes | None] = await pipe.execute()
        return replies
