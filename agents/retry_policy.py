"""What happens to a job after a failed attempt: retry later on a retry tier, or dead-letter.
Pure: the clock's reading and the random source are passed in.

A job type has ``retries`` retry tiers; tier ``n`` (1-based) waits ``backoff_s * 2^(n-1)``
(1 s, 2 s, 4 s by default) and has its own topic ``<job topic>.retry.<delay>s``. The record
goes there unchanged; when it is due travels in a header, jittered so that many jobs that
failed together do not come back together. A 429's ``Retry-After`` replaces the backoff.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from agents.backoff import backoff_delay

# the longest Retry-After cronbus honours; a longer one is capped (the job stays on its tier)
MAX_RETRY_AFTER_S = 3600.0


@dataclass(frozen=True)
class RetryPolicy:
    retries: int = 3
    backoff_s: float = 1.0
    jitter: float = 0.1

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise ValueError(f"retries must be >= 0, got {self.retries}")
        if self.backoff_s < 0:
            raise ValueError(f"backoff_s must be >= 0, got {self.backoff_s}")

    def tier_delays(self) -> tuple[float, ...]:
        """The nominal delay of each retry tier, first to last: names the retry topics."""
        return tuple(self.backoff_s * 2 ** n for n in range(self.retries))


@dataclass(frozen=True)
class Retry:
    tier_delay_s: float  # which retry topic
    due_at: float  # when the next attempt may start (epoch seconds)


@dataclass(frozen=True)
class DeadLetter:
    reason: str  # "permanent" or "exhausted"


def after_failure(
    policy: RetryPolicy, *, failures: int, retryable: bool, now: float,
    retry_after_s: float | None = None, rng: random.Random | None = None,
) -> Retry | DeadLetter:
    """The fate of a job whose attempt number ``failures`` (1-based, counting this one) failed."""
    if failures < 1:
        raise ValueError(f"failures is 1-based, got {failures}")
    if not retryable:
        return DeadLetter("permanent")
    if failures > policy.retries:
        return DeadLetter("exhausted")
    tier = policy.tier_delays()[failures - 1]
    if retry_after_s is not None:
        wait = min(max(0.0, retry_after_s), MAX_RETRY_AFTER_S)
    else:
        wait = backoff_delay(failures, base_s=policy.backoff_s, jitter=policy.jitter, rng=rng)
    return Retry(tier_delay_s=tier, due_at=now + wait)
