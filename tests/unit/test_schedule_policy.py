"""Misfire catch-up and overlap decisions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cronbus.agents.schedules.policy import due_fires, overlap_decision
from cronbus.streams.schedules import Schedule

GRACE = timedelta(seconds=2)
T0 = datetime(2026, 6, 1, 12, tzinfo=UTC)


def every_second(**fields: object) -> Schedule:
    return Schedule.model_validate({"id": "s1", "tenant_id": "acme", "name": "n",
                                    "job_type": "bank-sync", "every_ms": 1000, **fields})


def seconds(*offsets: int) -> list[datetime]:
    return [T0 + timedelta(seconds=s) for s in offsets]


def test_on_time_fires_run_and_the_next_one_is_named():
    due = due_fires(every_second(), T0, T0 + timedelta(seconds=1, milliseconds=5), grace=GRACE)
    assert due.fires == seconds(1) and due.dropped == 0 and due.next_at == T0 + timedelta(seconds=2)


@pytest.mark.parametrize("policy, extra, expected, dropped", [
    ("skip", {}, [19, 20], 18),
    ("run_once", {}, [18, 19, 20], 17),
    ("run_all", {"misfire_limit": 5}, [14, 15, 16, 17, 18, 19, 20], 13),
    ("run_all", {"misfire_limit": 100}, list(range(1, 21)), 0),
])
def test_twenty_seconds_down_each_misfire_policy(policy, extra, expected, dropped):
    schedule = every_second(misfire=policy, **extra)
    due = due_fires(schedule, T0, T0 + timedelta(seconds=20, milliseconds=500), grace=GRACE)
    assert due.fires == seconds(*expected)
    assert due.dropped == dropped


def test_limit_counts_every_fire_ever_made():
    schedule = every_second(limit=5, misfire="run_all", misfire_limit=100)
    due = due_fires(schedule, T0, T0 + timedelta(seconds=10), grace=GRACE, fired=3)
    assert due.fires == seconds(1, 2) and due.next_at is None
    assert due_fires(schedule, T0, T0 + timedelta(seconds=10), grace=GRACE, fired=5).fires == []


@pytest.mark.parametrize("policy, active, buffered, decision", [
    ("allow", True, False, "fire"),
    ("skip", False, False, "fire"),
    ("skip", True, False, "skip"),
    ("buffer_one", True, False, "buffer"),
    ("buffer_one", True, True, "skip"),
    ("buffer_one", False, True, "fire"),
])
def test_overlap(policy, active, buffered, decision):
    assert overlap_decision(every_second(overlap=policy), previous_active=active,
                            buffered=buffered) == decision
