from __future__ import annotations

import random

import pytest

from cronbus.agents.bridge.rules import MAX_DELAY_S, reconnect_delay


def test_the_delay_doubles_from_half_a_second_and_stops_at_five_seconds():
    no_jitter = [reconnect_delay(n, jitter=0) for n in range(1, 9)]
    assert no_jitter == [0.5, 1, 2, 4, 5, 5, 5, 5]


@pytest.mark.parametrize("attempt", [1, 3, 5, 8, 50])
def test_jitter_spreads_the_delay_but_never_past_the_cap(attempt):
    rng = random.Random(7)
    delays = [reconnect_delay(attempt, rng=rng) for _ in range(200)]
    nominal = min(MAX_DELAY_S, 0.5 * 2 ** (attempt - 1))
    assert all(nominal * 0.8 <= d <= min(MAX_DELAY_S, nominal * 1.2) for d in delays)
    assert len(set(delays)) > 1


@pytest.mark.parametrize("attempt", [1025, 1100, 10**6])
def test_an_outage_of_hours_still_waits_the_cap(attempt):
    """Attempt 1,100 comes after about 1.5 h of outage; 0.5 * 2^1099 used to overflow a float
    and end the bridge's loop."""
    assert reconnect_delay(attempt, jitter=0) == MAX_DELAY_S
    assert 0.8 * MAX_DELAY_S <= reconnect_delay(attempt) <= MAX_DELAY_S


def test_the_bridge_tries_again_within_seconds_whatever_the_outage_lasted():
    """The cap bounds how long the bridge stays unsubscribed (losing pub/sub messages, its
    health down) after its Redis is back; README "What a Redis outage costs" gives 15 s for
    /health, which the wait, one connect and a health poll must fit."""
    rng = random.Random(11)
    assert max(reconnect_delay(n, rng=rng) for n in range(1, 2000)) <= MAX_DELAY_S <= 5.0
