from __future__ import annotations

import random

import pytest

from cronbus.agents.bridge.rules import MAX_DELAY_S, reconnect_delay


def test_the_delay_doubles_from_half_a_second_and_stops_at_a_minute():
    no_jitter = [reconnect_delay(n, jitter=0) for n in range(1, 10)]
    assert no_jitter == [0.5, 1, 2, 4, 8, 16, 32, 60, 60]


@pytest.mark.parametrize("attempt", [1, 5, 8, 50])
def test_jitter_spreads_the_delay_but_never_past_the_cap(attempt):
    rng = random.Random(7)
    delays = [reconnect_delay(attempt, rng=rng) for _ in range(200)]
    nominal = min(MAX_DELAY_S, 0.5 * 2 ** (attempt - 1))
    assert all(nominal * 0.8 <= d <= min(MAX_DELAY_S, nominal * 1.2) for d in delays)
    assert len(set(delays)) > 1
