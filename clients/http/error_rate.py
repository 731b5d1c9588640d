"""The error-rate rule of a circuit breaker: trip when, among the calls of the last
``window_s`` seconds, at least ``min_calls`` were made and at least ``rate`` of them failed.

Pure: no clock, no I/O; the caller passes ``now`` (a monotonic time in seconds). Counting
consecutive failures (pybreaker's ``fail_max``) misses an API that fails every other call;
a rate over a window catches it ("opens at 50 % errors", as opossum does).

The window is a ring of ``buckets`` equal slices of ``window_s`` (30 by default: 1 s each for
a 30 s window), each holding its calls and failures, with running totals beside them: memory
is bounded by the bucket count whatever the traffic, and recording or asking is O(1)
amortized. An outcome counts while its slice is one of the last ``buckets``: at least
``window_s - window_s / buckets`` seconds and at most ``window_s`` seconds after it happened.
"""

from __future__ import annotations

import math
from collections import deque


class ErrorRate:
    """Recent call outcomes and the rule "at least ``min_calls`` calls, failures/calls >= rate"."""

    def __init__(self, *, rate: float = 0.5, min_calls: int = 10, window_s: float = 30.0,
                 buckets: int = 30) -> None:
        if not 0 < rate <= 1:
            raise ValueError(f"rate must be > 0 and <= 1, not {rate!r}")
        if min_calls < 1:
            raise ValueError(f"min_calls must be >= 1, not {min_calls!r}")
        if not window_s > 0:
            raise ValueError(f"window_s must be > 0, not {window_s!r}")
        if buckets < 1:
            raise ValueError(f"buckets must be >= 1, not {buckets!r}")
        self.rate = rate
        self.min_calls = min_calls
        self.window_s = window_s
        self._buckets = buckets
        self._bucket_s = window_s / buckets
        # [slice number, calls, failures], oldest first; at most ``buckets`` of them
        self._slices: deque[list[int]] = deque()
        self._calls = 0
        self._failures = 0

    def record(self, now: float, *, failed: bool) -> None:
        """One call ended at ``now``: a failure (retryable) or not."""
        number = self._slice(now)
        self._expire(number)
        if self._slices and self._slices[-1][0] >= number:
            current = self._slices[-1]  # same slice (or a clock that stepped back: the newest)
        else:
            current = [number, 0, 0]
            self._slices.append(current)
        current[1] += 1
        self._calls += 1
        if failed:
            current[2] += 1
            self._failures += 1

    def counts(self, now: float) -> tuple[int, int]:
        """(calls, failures) in the window ending at ``now``."""
        self._expire(self._slice(now))
        return self._calls, self._failures

    def should_trip(self, now: float) -> bool:
        """Enough calls in the window, and failures are at least ``rate`` of them."""
        calls, failures = self.counts(now)
        return calls >= self.min_calls and failures / calls >= self.rate

    def reset(self) -> None:
        """Forget every outcome: after a trip the circuit starts again from nothing."""
        self._slices.clear()
        self._calls = self._failures = 0

    def _slice(self, now: float) -> int:
        return math.floor(now / self._bucket_s)

    def _expire(self, number: int) -> None:
        """Drop the slices that are no longer among the last ``buckets`` before ``number``."""
        oldest_kept = number - self._buckets + 1
        while self._slices and self._slices[0][0] < oldest_kept:
            _, calls, failures = self._slices.popleft()
            self._calls -= calls
            self._failures -= failures
