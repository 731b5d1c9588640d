"""Circuit breaker state shared by every worker through Redis (pybreaker's Redis storage),
read at most every ``refresh_s`` so a call does not pay a Redis round trip for it.

pybreaker's ``CircuitRedisStorage`` is synchronous and, per call, reads the state and resets
the failure counter: two blocking round trips per downstream call. Here the state is cached
for ``refresh_s`` (a worker sees another's trip within that time) and a success resets the
shared failure counter at most once per ``refresh_s`` unless this worker counted a failure
since. Failures, trips and probes are written at once.
"""

from __future__ import annotations

import time

import pybreaker
import redis


class SharedBreakerStorage(pybreaker.CircuitRedisStorage):
    def __init__(
        self, redis_client: redis.Redis, *, namespace: str, refresh_s: float = 0.25,
        state: str = pybreaker.STATE_CLOSED,
    ) -> None:
        super().__init__(state, redis_client, namespace=namespace)
        self._refresh_s = refresh_s
        self._cached: str | None = None
        self._read_at = 0.0
        self._reset_at: float | None = None  # when this worker last zeroed the counter

    @property  # type: ignore[override]
    def state(self) -> str:
        now = time.monotonic()
        if self._cached is None or now - self._read_at >= self._refresh_s:
            self._cached = pybreaker.CircuitRedisStorage.state.fget(self)  # type: ignore[attr-defined]
            self._read_at = now
        assert self._cached is not None
        return self._cached

    @state.setter
    def state(self, state: str) -> None:
        pybreaker.CircuitRedisStorage.state.fset(self, state)  # type: ignore[attr-defined]
        self._cached = str(state)
        self._read_at = time.monotonic()

    def increment_counter(self) -> None:
        super().increment_counter()
        self._reset_at = None

    def reset_counter(self) -> None:
        now = time.monotonic()
        if self._reset_at is not None and now - self._reset_at < self._refresh_s:
            return
        super().reset_counter()
        self._reset_at = now

    def forget(self) -> None:
        """Read the state from Redis on the next look (after a trip seen elsewhere)."""
        self._cached = None
