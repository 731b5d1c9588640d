"""The error-rate rule at its edges: too few calls, exactly the rate, outcomes leaving the
window, a reset after a trip, bounded memory."""

from __future__ import annotations

import pytest

from cronbus.clients.http.error_rate import ErrorRate


def rule(**kwargs: float) -> ErrorRate:
    # 10 s in ten 1-s slices: an outcome at t counts until the slice of t + 10 begins
    return ErrorRate(**{"rate": 0.5, "min_calls": 4, "window_s": 10.0, "buckets": 10, **kwargs})


def feed(rate: ErrorRate, now: float, outcomes: str) -> None:
    """``outcomes`` as letters: f a failure, s a success, each at ``now``."""
    for letter in outcomes:
        rate.record(now, failed=letter == "f")


def test_no_trip_below_min_calls_even_when_every_call_failed():
    rate = rule()
    feed(rate, 0.0, "fff")
    assert rate.counts(0.0) == (3, 3)
    assert not rate.should_trip(0.0)
    feed(rate, 0.0, "f")
    assert rate.should_trip(0.0)


def test_exactly_the_rate_trips_and_just_below_does_not():
    rate = rule()
    feed(rate, 0.0, "sfsfs")  # 2 of 5: 40 %
    assert not rate.should_trip(0.0)
    feed(rate, 0.0, "f")  # 3 of 6: exactly 50 %
    assert rate.counts(0.0) == (6, 3)
    assert rate.should_trip(0.0)


def test_a_decimal_rate_is_met_exactly():
    rate = rule(rate=0.3, min_calls=10)
    feed(rate, 0.0, "fff" + "s" * 7)  # 3 of 10 is 0.3, not a hair below it
    assert rate.should_trip(0.0)


def test_a_rate_of_one_needs_every_call_failed():
    rate = rule(rate=1.0)
    feed(rate, 0.0, "ffffs")
    assert not rate.should_trip(0.0)
    rate.reset()
    feed(rate, 0.0, "ffff")
    assert rate.should_trip(0.0)


def test_successes_count_as_calls_and_dilute_the_rate():
    rate = rule()
    feed(rate, 1.0, "ffff")
    assert rate.should_trip(1.0)
    feed(rate, 2.0, "sssss")
    assert rate.counts(2.0) == (9, 4)
    assert not rate.should_trip(2.0)


def test_old_outcomes_leave_the_window_at_its_slice_boundary():
    rate = rule()
    feed(rate, 0.5, "ff")  # slice 0
    feed(rate, 3.0, "ff")  # slice 3
    assert rate.should_trip(9.999)  # slice 9: slices 0..9 kept
    assert rate.counts(10.0) == (2, 2)  # slice 10: slice 0 gone, 9.5 s after its outcomes
    assert not rate.should_trip(10.0)  # two calls left, below min_calls
    assert rate.counts(12.999) == (2, 2)
    assert rate.counts(13.0) == (0, 0)  # slice 13: slice 3 gone, exactly 10 s after


def test_failures_that_left_the_window_do_not_tip_new_successes():
    rate = rule()
    feed(rate, 0.0, "ffff")
    feed(rate, 10.0, "ssss")
    assert rate.counts(10.0) == (4, 0)
    assert not rate.should_trip(10.0)


def test_reset_after_a_trip_starts_from_nothing():
    rate = rule()
    feed(rate, 0.0, "ffff")
    assert rate.should_trip(0.0)
    rate.reset()
    assert rate.counts(0.0) == (0, 0)
    assert not rate.should_trip(0.0)
    feed(rate, 0.0, "fff")  # min_calls must be reached again
    assert not rate.should_trip(0.0)
    feed(rate, 0.0, "f")
    assert rate.should_trip(0.0)


def test_memory_is_bounded_by_the_slice_count_whatever_the_traffic():
    rate = rule()
    for step in range(10_000):
        rate.record(step * 0.01, failed=step % 2 == 0)  # 100 calls a second for 100 s
    assert len(rate._slices) == 10
    assert rate.counts(99.99) == (1000, 500)


def test_a_clock_stepping_back_counts_the_outcome_in_the_newest_slice():
    rate = rule()
    feed(rate, 5.0, "ss")
    feed(rate, 4.0, "ff")
    assert list(rate._slices) == [[5, 4, 2]]
    assert rate.should_trip(5.0)


@pytest.mark.parametrize("kwargs", [
    {"rate": 0.0}, {"rate": 1.5}, {"min_calls": 0}, {"window_s": 0.0}, {"buckets": 0},
])
def test_nonsense_is_refused(kwargs):
    with pytest.raises(ValueError):
        rule(**kwargs)
