"""What happens to a job after a failed attempt: retry later on a retry tier, or dead-letter.
Pure: the clock's reading and the random source are passed in.

A job type has ``retries`` retry tiers; tier ``n`` (1-based) waits ``backoff_s * 2^(n-1)``
(1 s, 2 s, 4 s by default) and has its own topic ``<job topic>.retry.<delay>s``. The record
goes there unchanged; when it is due travels in a header, jittered so that many jobs that
failed together do not come back together. A 429's ``Retry-After`` replaces the backoff.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from cronbus.agents.processing.backoff import backoff_delay
from cronbus.streams import headers


@dataclass(frozen=True)
class RetryPolicy:
    retries: int = 3
    backoff_s: float = 1.0
    jitter: float = 0.1
    # the longest 429 Retry-After honoured; a longer one is capped (the job stays on its tier)
    max_retry_after_s: float = 3600.0

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
class GiveUp:
    """No more attempts: the job goes to its dead-letter topic."""

    reason: str  # "permanent" or "exhausted"


def after_failure(
    policy: RetryPolicy, *, failures: int, retryable: bool, now: float,
    retry_after_s: float | None = None, rng: random.Random | None = None,
) -> Retry | GiveUp:
    """The fate of a job whose attempt number ``failures`` (1-based, counting this one) failed."""
    if failures < 1:
        raise ValueError(f"failures is 1-based, got {failures}")
    if not retryable:
        return GiveUp("permanent")
    if failures > policy.retries:
        return GiveUp("exhausted")
    tier = policy.tier_delays()[failures - 1]
    if retry_after_s is not None:
        wait = min(max(0.0, retry_after_s), policy.max_retry_after_s)
    else:
        wait = backoff_delay(failures, base_s=policy.backoff_s, jitter=policy.jitter, rng=rng)
    return Retry(tier_delay_s=tier, due_at=now + wait)


# the most attempts a record's headers may claim (more is no story cronbus wrote)
MAX_STORY_ATTEMPTS = 10_000


class BadHeader(ValueError):
    """A header cronbus reads back from a record says something it could never have written."""


@dataclass(frozen=True)
class Story:
    """What a record on a retry topic says of its job's past: read back, never trusted."""

    failures: int = 0  # attempts that failed so far
    first_failure_at: float = 0.0  # epoch seconds; 0 when none failed
    due_at: float | None = None  # when the next attempt may start; None: at once

    def failed(self, *, at: float) -> Story:
        """The story after one more failed attempt at ``at``."""
        return Story(failures=self.failures + 1, first_failure_at=self.first_failure_at or at)


def story_of(values: dict[str, str], *, now: float, longest_wait_s: float) -> Story:
    """Read a retry record's story from its headers (``cronbus-attempts``, first failure and
    retry time). A due time later than ``longest_wait_s`` from ``now`` is capped there: no
    policy of this worker waits longer, so no record waits forever. Raises :class:`BadHeader`
    naming the header and what it holds when one is not a number cronbus would write."""
    attempts = _number(values, headers.ATTEMPTS, whole=True)
    if attempts is not None and not 0 <= attempts <= MAX_STORY_ATTEMPTS:
        raise BadHeader(f"header {headers.ATTEMPTS} is {attempts:g}, not 0..{MAX_STORY_ATTEMPTS}")
    first = _number(values, headers.FIRST_FAILURE_AT)
    due = _number(values, headers.RETRY_AT)
    return Story(failures=int(attempts or 0), first_failure_at=max(0.0, first or 0.0),
                 due_at=None if due is None else min(due, now + longest_wait_s))


def longest_wait_s(policy: RetryPolicy) -> float:
    """The longest a retry can be due after its failure under ``policy`` (a 429's Retry-After
    included)."""
    tiers = policy.tier_delays()
    return max(max(tiers, default=0.0) * (1 + policy.jitter), policy.max_retry_after_s)


def _number(values: dict[str, str], name: str, *, whole: bool = False) -> float | None:
    text = values.get(name, "").strip()
    if not text:
        return None
    try:
        number = int(text) if whole else float(text)
    except ValueError:
        raise BadHeader(f"header {name} is {text[:40]!r}, not a "
                        f"{'whole number' if whole else 'number'}") from None
    if not math.isfinite(number) or number < 0:
        raise BadHeader(f"header {name} is {text[:40]!r}, not a finite number >= 0")
    return number
