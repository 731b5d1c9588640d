"""Circuit breaker state shared by every worker through Redis, without a Redis round trip in
the call path.

pybreaker's own ``CircuitRedisStorage`` is synchronous: every call reads the state and resets
the failure counter through a blocking client, so a slow Redis froze every job of a worker
(up to its 2 s socket timeout, per call). Here pybreaker reads and writes memory only
(:class:`SharedBreakerStorage` is its memory storage), and :meth:`SharedBreakerStorage.sync`,
awaited by the processor engine every few hundred milliseconds, writes this worker's changes to
Redis and takes the others': a trip, an opening time, the shared count of failures in a row.

So a worker sees another's trip within one sync (0.25 s), and a Redis that is slow or away
delays only the sharing, never a call: each worker's breaker goes on deciding alone.
The keys are pybreaker's (``<namespace>:pybreaker:state`` ...), so a rolling upgrade shares.
"""

from __future__ import annotations

import calendar
import logging
from datetime import UTC, datetime

import pybreaker
import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)


class SharedBreakerStorage(pybreaker.CircuitMemoryStorage):
    def __init__(self, redis: aioredis.Redis, *, namespace: str,
                 state: str = pybreaker.STATE_CLOSED) -> None:
        super().__init__(state)
        self._redis = redis
        self._namespace = namespace
        self._changed_state: str | None = None  # set here, not yet written
        self._changed_opened_at: datetime | None = None
        self._failures = 0  # counted here since the last sync
        self._zeroed = False  # this worker reset the count since the last sync
        self._unshared = False  # the last sync failed (logged once until one succeeds)

    def key(self, name: str) -> str:
        return f"{self._namespace}:pybreaker:{name}"

    @property  # type: ignore[override]
    def state(self) -> str:
        return self._state

    @state.setter
    def state(self, state: str) -> None:
        self._state = str(state)
        self._changed_state = self._state

    @property  # type: ignore[override]
    def opened_at(self) -> datetime | None:
        return self._opened_at

    @opened_at.setter
    def opened_at(self, moment: datetime) -> None:
        self._opened_at = moment
        self._changed_opened_at = moment

    def increment_counter(self) -> None:
        super().increment_counter()
        self._failures += 1

    def reset_counter(self) -> None:
        super().reset_counter()
        self._failures = 0
        self._zeroed = True

    async def sync(self) -> None:
        """Write what changed here since the last sync and read the shared state. What changes
        while the round trip is under way is written by the next sync."""
        state, opened_at = self._changed_state, self._changed_opened_at
        failures, zeroed = self._failures, self._zeroed
        self._changed_state = self._changed_opened_at = None
        self._failures, self._zeroed = 0, False
        pipe = self._redis.pipeline(transaction=False)
        if state is not None:
            pipe.set(self.key("state"), state)
        if opened_at is not None:
            pipe.set(self.key("opened_at"), calendar.timegm(opened_at.timetuple()))
        if zeroed:
            pipe.set(self.key("fail_counter"), failures)
        elif failures:
            pipe.incrby(self.key("fail_counter"), failures)
        pipe.mget(self.key("state"), self.key("opened_at"), self.key("fail_counter"))
        try:
            shared_state, shared_opened_at, shared_failures = (await pipe.execute())[-1]
        except (RedisError, OSError) as exc:
            self._unsent(state, opened_at, failures, zeroed)
            if not self._unshared:
                log.warning("breaker state of %s not shared (Redis: %s); this worker decides "
                            "alone until Redis answers", self._namespace, exc)
                self._unshared = True
            return
        if self._unshared:
            log.info("breaker state of %s shared again", self._namespace)
            self._unshared = False
        if self._changed_state is None and shared_state is not None:
            self._state = shared_state.decode()
        if self._changed_opened_at is None and shared_opened_at is not None:
            self._opened_at = datetime.fromtimestamp(int(shared_opened_at), UTC)
        if shared_failures is not None:
            self._fail_counter = int(shared_failures) + self._failures

    def _unsent(self, state: str | None, opened_at: datetime | None, failures: int,
                zeroed: bool) -> None:
        """Keep what a failed sync did not write, for the next one (newer changes win)."""
        self._changed_state = self._changed_state or state
        self._changed_opened_at = self._changed_opened_at or opened_at
        if not self._zeroed:
            self._failures += failures
            self._zeroed = zeroed
