from __future__ import annotations

from collections import Counter

import pytest

from cronbus.agents.ingest.debounce import IMMEDIATE, DebouncePolicy, Window, job_for_window
from cronbus.agents.ingest.window_book import WindowBook
from cronbus.streams.jobs import job_id_for, window_trigger_ref

AT = "2026-11-23T10:00:00+00:00"


def feed(policy: DebouncePolicy, arrivals: list[float]) -> tuple[Window, list[float]]:
    window, fired_at = None, []
    for n, now in enumerate(arrivals):
        window, fire = policy.observe(window, f"e{n}", AT, now)
        if fire:
            fired_at.append(now)
    assert window is not None
    return window, fired_at


def test_trailing_fires_once_the_tenant_is_quiet_for_the_window():
    policy = DebouncePolicy("trailing", window_s=5)
    window, fired = feed(policy, [0, 1, 2, 3])
    assert fired == []
    assert policy.closes_at(window) == 8
    assert not policy.is_closed(window, 7.99)
    assert policy.is_closed(window, 8)
    assert window.count == 4 and window.event_ids == ["e0", "e1", "e2", "e3"]
    assert (window.first_event_id, window.last_event_id) == ("e0", "e3")


def test_trailing_with_max_wait_fires_even_while_events_keep_coming():
    policy = DebouncePolicy("trailing", window_s=5, max_wait_s=12)
    window, _ = feed(policy, [float(t) for t in range(0, 20, 2)])
    assert policy.closes_at(window) == 12


def test_leading_fires_the_first_event_and_suppresses_the_cooldown():
    policy = DebouncePolicy("leading", window_s=5)
    window, fired = feed(policy, [10, 11, 14.9])
    assert fired == [10]
    assert window.fired and window.count == 3
    assert policy.closes_at(window) == 15  # from the first event, not the last
    assert window.event_ids == ["e0"]


def test_listed_event_ids_are_bounded_but_all_are_counted():
    policy = DebouncePolicy("trailing", window_s=1, max_event_ids=3)
    window, _ = feed(policy, [0.0] * 10)
    assert window.count == 10 and window.event_ids == ["e0", "e1", "e2"]
    assert window.last_event_id == "e9"


def test_a_window_survives_its_round_trip_through_a_table():
    policy = DebouncePolicy("trailing", window_s=1)
    window, _ = feed(policy, [0, 0.5])
    assert Window.from_dict(window.to_dict()) == window


@pytest.mark.parametrize("kwargs, message", [
    ({"mode": "trailing", "window_s": 0}, "window_s must be > 0"),
    ({"mode": "leading", "window_s": 5, "max_wait_s": 10}, "trailing windows only"),
    ({"mode": "trailing", "window_s": 5, "max_wait_s": 2}, "must be >= window_s"),
])
def test_bad_policies_are_refused_with_the_reason(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DebouncePolicy(**kwargs)


def test_the_job_id_depends_on_tenant_type_and_first_event_only():
    policy = DebouncePolicy("trailing", window_s=1)
    short, _ = feed(policy, [0])
    long, _ = feed(policy, [0, 1, 2])
    a = job_for_window("t1", "invoice-generation", short, now=5)
    b = job_for_window("t1", "invoice-generation", long, now=99)
    assert a.job_id == b.job_id == job_id_for("t1", "invoice-generation",
                                              window_trigger_ref("e0"))
    other_tenant = job_for_window("t2", "invoice-generation", short, now=5)
    assert other_tenant.job_id != a.job_id
    assert b.covers is not None and b.covers.count == 3 and b.covers.event_ids == ["e0", "e1", "e2"]


def test_a_redelivered_event_is_not_counted_twice():
    policy = DebouncePolicy("trailing", window_s=5)
    window, _ = feed(policy, [0, 1])
    window, fired = policy.observe(window, "e1", AT, 2)
    assert not fired and window.count == 2 and window.last_at == 1


def test_each_event_has_one_outcome_by_its_policy_and_whether_it_opened_a_window():
    assert IMMEDIATE.outcome(opened=False) == "immediate"
    trailing, leading = DebouncePolicy("trailing", window_s=5), DebouncePolicy("leading", window_s=5)
    assert (trailing.outcome(opened=True), trailing.outcome(opened=False)) == ("opened", "joined")
    assert (leading.outcome(opened=True), leading.outcome(opened=False)) == ("opened", "suppressed")


@pytest.mark.parametrize("policy", [
    DebouncePolicy("trailing", window_s=5), DebouncePolicy("trailing", window_s=5, max_wait_s=8),
    DebouncePolicy("leading", window_s=5), IMMEDIATE,
])
def test_every_event_counts_once_and_the_suppression_ratio_stays_within_0_and_1(policy):
    """As ingest counts: an outcome per event seen, nothing added when a window closes."""
    book = WindowBook({"t": policy})
    book.own(0)
    outcomes: Counter[str] = Counter()
    jobs = 0
    arrivals = [n * 0.7 for n in range(40)]  # a burst longer than any window, two tenants
    for n, now in enumerate(arrivals):
        jobs += len(book.close_due(now)) if policy.mode == "trailing" else 0
        tenant = f"tenant-{n % 2}"
        if policy.mode == "immediate":
            outcomes[policy.outcome(opened=False)] += 1
            jobs += 1
            continue
        opened, fired = book.observe(0, tenant, "t", f"e{n}", AT, now)
        outcomes[policy.outcome(opened)] += 1
        jobs += fired is not None
    jobs += len(book.close_due(arrivals[-1] + 60)) if policy.mode == "trailing" else 0

    assert sum(outcomes.values()) == len(arrivals)  # exclusive: one outcome per event
    assert jobs == outcomes["opened"] + outcomes["immediate"]  # a job per window or event
    ratio = (outcomes["joined"] + outcomes["suppressed"]) / sum(outcomes.values())
    assert 0 <= ratio <= 1
    if policy.mode != "immediate":
        assert ratio > 0.5  # the burst is mostly folded into few jobs
