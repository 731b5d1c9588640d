from __future__ import annotations

import random

import pytest

from cronbus.agents.processing.backoff import backoff_delay


def test_delays_double_per_attempt_without_jitter():
    assert [backoff_delay(n, base_s=1, jitter=0) for n in (1, 2, 3)] == [1, 2, 4]


def test_jitter_stays_within_its_fraction():
    rng = random.Random(7)
    delays = [backoff_delay(3, base_s=1, jitter=0.1, rng=rng) for _ in range(500)]
    assert min(delays) >= 3.6 and max(delays) <= 4.4
    assert len(set(delays)) > 400


def test_the_cap_holds_and_attempts_are_one_based():
    assert backoff_delay(30, base_s=1, jitter=0, cap_s=60) == 60
    with pytest.raises(ValueError, match="1-based"):
        backoff_delay(0, base_s=1)
