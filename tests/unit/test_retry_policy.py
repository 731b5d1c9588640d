"""Retry tiers, backoff with jitter, Retry-After, and when a job is dead-lettered."""

from __future__ import annotations

import random

import pytest

from agents.retry_policy import DeadLetter, Retry, RetryPolicy, after_failure

NOW = 1_000_000.0


def test_default_tiers_are_one_two_four_seconds():
    assert RetryPolicy().tier_delays() == (1.0, 2.0, 4.0)
    assert RetryPolicy(retries=2, backoff_s=0.5).tier_delays() == (0.5, 1.0)


@pytest.mark.parametrize("failures, tier", [(1, 1.0), (2, 2.0), (3, 4.0)])
def test_each_failure_goes_to_the_next_tier_with_jitter(failures, tier):
    rng = random.Random(1)
    decision = after_failure(RetryPolicy(), failures=failures, retryable=True, now=NOW, rng=rng)
    assert isinstance(decision, Retry)
    assert decision.tier_delay_s == tier
    assert tier * 0.9 <= decision.due_at - NOW <= tier * 1.1


def test_jitter_spreads_jobs_that_failed_together():
    rng = random.Random(7)
    dues = {after_failure(RetryPolicy(), failures=1, retryable=True, now=NOW, rng=rng).due_at
            for _ in range(20)}
    assert len(dues) > 10


def test_after_the_last_retry_the_job_is_dead_lettered():
    assert after_failure(RetryPolicy(), failures=4, retryable=True, now=NOW) == DeadLetter("exhausted")
    assert after_failure(RetryPolicy(retries=0), failures=1, retryable=True, now=NOW) == DeadLetter(
        "exhausted")


def test_a_permanent_failure_is_dead_lettered_at_once():
    assert after_failure(RetryPolicy(), failures=1, retryable=False, now=NOW) == DeadLetter("permanent")


def test_retry_after_replaces_the_backoff_and_is_capped():
    decision = after_failure(RetryPolicy(), failures=1, retryable=True, now=NOW, retry_after_s=7)
    assert decision == Retry(tier_delay_s=1.0, due_at=NOW + 7)
    capped = after_failure(RetryPolicy(), failures=2, retryable=True, now=NOW, retry_after_s=1e9)
    assert isinstance(capped, Retry) and capped.due_at == NOW + 3600


def test_bad_policies_are_refused():
    with pytest.raises(ValueError, match="retries"):
        RetryPolicy(retries=-1)
    with pytest.raises(ValueError, match="1-based"):
        after_failure(RetryPolicy(), failures=0, retryable=True, now=NOW)
