"""Retry tiers, backoff with jitter, Retry-After, and when a job is dead-lettered."""

from __future__ import annotations

import random

import pytest

from cronbus.agents.processing.retry_policy import (
    BadHeader,
    GiveUp,
    Retry,
    RetryPolicy,
    Story,
    after_failure,
    longest_wait_s,
    story_of,
)

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
    assert after_failure(RetryPolicy(), failures=4, retryable=True, now=NOW) == GiveUp("exhausted")
    assert after_failure(RetryPolicy(retries=0), failures=1, retryable=True, now=NOW) == GiveUp(
        "exhausted")


def test_a_permanent_failure_is_dead_lettered_at_once():
    assert after_failure(RetryPolicy(), failures=1, retryable=False, now=NOW) == GiveUp("permanent")


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


# --- the story a retry record carries, read back defensively

LONGEST = 3600.0


def test_a_story_cronbus_wrote_is_read_back():
    story = story_of({"cronbus-attempts": "2", "cronbus-first-failure-at": "100.5",
                      "cronbus-retry-at": f"{NOW + 4:.3f}"}, now=NOW, longest_wait_s=LONGEST)
    assert story == Story(failures=2, first_failure_at=100.5, due_at=pytest.approx(NOW + 4))


@pytest.mark.parametrize(("name", "value"), [
    ("cronbus-attempts", "abc"), ("cronbus-attempts", "1.5"), ("cronbus-attempts", "-1"),
    ("cronbus-attempts", "99999999"), ("cronbus-retry-at", "soon"), ("cronbus-retry-at", "nan"),
    ("cronbus-retry-at", "inf"), ("cronbus-first-failure-at", "\ufffd"),
])
def test_a_header_cronbus_could_not_have_written_is_named(name, value):
    with pytest.raises(BadHeader, match=name):
        story_of({name: value}, now=NOW, longest_wait_s=LONGEST)


def test_a_retry_time_is_capped_by_the_longest_wait_of_the_policy():
    story = story_of({"cronbus-retry-at": "1e12"}, now=NOW, longest_wait_s=LONGEST)
    assert story.due_at == NOW + LONGEST
    assert longest_wait_s(RetryPolicy(max_retry_after_s=2)) == pytest.approx(4 * 1.1)
    assert longest_wait_s(RetryPolicy()) == 3600
