"""Priorities: how users write them, where they come from, and the one tier rule."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from pydantic import BaseModel

from cronbus.agents.ingest.debounce import DebouncePolicy, job_for_window
from cronbus.agents.ingest.service import immediate_job
from cronbus.agents.processing.dead_letters import DeadLetter, NotReplayable, replay_destination
from cronbus.agents.schedules.api_rules import run_by_hand
from cronbus.agents.schedules.ticker import Tick
from cronbus.streams import headers, topics
from cronbus.streams.catalog import Catalog, CatalogError, JobType, RestCall
from cronbus.streams.events import (
    CronTick,
    EntityModified,
    InvalidReason,
    Rejection,
    parse_event,
)
from cronbus.streams.jobs import Job
from cronbus.streams.priorities import Tier, parse_priority, tier_of
from cronbus.streams.schedules import InvalidSchedule, parse_schedule, schedule_from_request

NOW = datetime(2026, 11, 23, 10, tzinfo=UTC)
CALL = RestCall("POST", lambda job: "/x")
MODELS = {topics.ENTITY_MODIFIED: EntityModified, topics.CRON_TICKS: CronTick}


@pytest.mark.parametrize("written, number", [
    (1, 1), (10, 10), ("low", 1), ("normal", 5), ("HIGH", 8), (" critical ", 10), ("7", 7),
])
def test_a_priority_is_a_number_1_to_10_or_a_bullmq_name(written, number):
    assert parse_priority(written) == number


@pytest.mark.parametrize("written", [0, 11, -1, "urgent", "", True, 5.5, None, "8.0"])
def test_anything_else_is_refused_saying_what_is_accepted(written):
    with pytest.raises(ValueError, match=r"1\.\.10 nor one of low \(1\), normal \(5\)"):
        parse_priority(written)


@pytest.mark.parametrize("priority, tier", [
    (10, Tier.HIGH), (8, Tier.HIGH), (7, Tier.NORMAL), (5, Tier.NORMAL), (4, Tier.NORMAL),
    (3, Tier.LOW), (1, Tier.LOW), (None, Tier.NORMAL),
])
def test_the_tier_of_a_priority(priority, tier):
    assert tier_of(priority) is tier
    assert tier_of(priority, ordered=True) is Tier.NORMAL  # an ordered type has one tier


def test_the_one_tier_rule_names_the_topics():
    assert topics.job_topic_for("export", 8) == "jobs.export.high"
    assert topics.job_topic_for("export", 5) == "jobs.export"
    assert topics.job_topic_for("export", None) == "jobs.export"
    assert topics.job_topic_for("export", 1) == "jobs.export.low"
    assert topics.job_topic_for("export", 10, ordered=True) == "jobs.export"
    assert topics.tier_topics("export") == ["jobs.export.high", "jobs.export", "jobs.export.low"]
    assert topics.tier_topics("export", ordered=True) == ["jobs.export"]
    # every tier is of its job type; the retry and dead-letter topics stay jobs.<type>'s
    for topic in topics.tier_topics("export"):
        assert topics.job_type_of(topic) == "export"
    assert topics.tier_of_topic("jobs.export.high") is Tier.HIGH
    assert topics.tier_of_topic("jobs.export") is Tier.NORMAL
    assert topics.tier_of_topic("jobs.export.retry.4s") is None
    assert topics.tier_of_topic("jobs.export.dead-letter") is None


def test_a_job_without_priority_encodes_as_before_and_one_with_it_round_trips():
    base = {"job_id": "j-1", "tenant_id": "acme", "type": "export", "triggered_by": "event",
            "scheduled_at": NOW}
    old = Job.model_validate(base)
    assert "priority" not in json.loads(old.encode())
    assert Job.decode(old.encode()) == old
    high = Job.model_validate({**base, "priority": "high"})
    assert high.priority == 8 and Job.decode(high.encode()) == high


def test_a_job_type_declares_its_default_and_an_ordered_one_none():
    assert JobType("a", call=CALL).default_priority == 5
    assert JobType("a", call=CALL, priority="critical").default_priority == 10
    with pytest.raises(CatalogError, match="job type a: priority 'asap'"):
        JobType("a", call=CALL, priority="asap")
    with pytest.raises(CatalogError, match="ordered job type has no priority tiers"):
        JobType("a", call=CALL, ordered=True, priority=8)
    catalog = Catalog.of([JobType("a", call=CALL), JobType("b", call=CALL, ordered=True)])
    assert catalog.job_topics() == ["jobs.a.high", "jobs.a", "jobs.a.low", "jobs.b"]
    made = catalog.topics("app")
    assert "jobs.a.dead-letter" in made and "jobs.a.high.dead-letter" not in made


def _event(**extra: object) -> bytes:
    return json.dumps({"event_id": "e1", "tenant_id": "acme", "occurred_at": NOW.isoformat(),
                       "entity_type": "invoice", "entity_id": "i1", **extra}).encode()


def test_a_publisher_gives_priority_on_the_envelope_and_a_bad_one_is_rejected_naming_it():
    event = parse_event(topics.ENTITY_MODIFIED, _event(priority="high"), max_bytes=10_000,
                        models=MODELS)
    assert isinstance(event, EntityModified) and event.priority == 8
    job = immediate_job(event, "entity-sync", NOW.timestamp(), default_priority=5)
    assert job.priority == 8 and "priority" not in job.payload
    bad = parse_event(topics.ENTITY_MODIFIED, _event(priority="asap"), max_bytes=10_000,
                      models=MODELS)
    assert isinstance(bad, Rejection) and bad.reason is InvalidReason.BAD_FIELD
    assert bad.detail.startswith("priority: ")


def test_without_a_publisher_priority_the_job_type_default_applies():
    event = parse_event(topics.ENTITY_MODIFIED, _event(), max_bytes=10_000, models=MODELS)
    assert isinstance(event, EntityModified)
    assert immediate_job(event, "entity-sync", NOW.timestamp(), default_priority=3).priority == 3


def test_a_debounced_window_runs_at_the_highest_priority_of_its_events():
    policy = DebouncePolicy("trailing", window_s=5)
    window, _ = policy.observe(None, "e1", NOW.isoformat(), 1.0, None)
    window, _ = policy.observe(window, "e2", NOW.isoformat(), 2.0, 8)
    window, _ = policy.observe(window, "e3", NOW.isoformat(), 3.0, 3)
    assert job_for_window("acme", "entity-sync", window, 9.0, 5).priority == 8
    quiet, _ = policy.observe(None, "e1", NOW.isoformat(), 1.0)
    assert job_for_window("acme", "entity-sync", quiet, 9.0, 2).priority == 2
    # the changelog keeps it; a window written before priorities reads as none given
    restored = type(window).from_dict(window.to_dict())
    assert restored.priority == 8
    old = window.to_dict()
    del old["priority"]
    assert type(window).from_dict(old).priority is None


def _schedule(**extra: object):
    return parse_schedule({"id": "s1", "tenant_id": "acme", "name": "s1", "job_type": "export",
                           "cron": "0 * * * *", **extra})


def test_a_schedule_carries_priority_onto_its_ticks_and_its_jobs():
    schedule = _schedule(priority="high")
    assert schedule.priority == 8
    tick = parse_event(topics.CRON_TICKS, Tick(schedule, NOW).value("tick-1"), max_bytes=10_000,
                       models=MODELS)
    assert isinstance(tick, CronTick) and tick.priority == 8
    assert immediate_job(tick, "export", NOW.timestamp(), default_priority=5).priority == 8
    by_hand = run_by_hand(schedule, "manual-1", fire_at=NOW, now=NOW)
    assert by_hand.priority == 8
    plain = parse_event(topics.CRON_TICKS, Tick(_schedule(), NOW).value("tick-2"),
                        max_bytes=10_000, models=MODELS)
    assert isinstance(plain, CronTick) and plain.priority is None
    assert immediate_job(plain, "export", NOW.timestamp(), default_priority=5).priority == 5
    assert b"priority" not in _schedule().encode()  # stored schedules without one unchanged


def test_a_schedule_with_a_bad_priority_names_the_field():
    with pytest.raises(InvalidSchedule) as caught:
        schedule_from_request({"job_type": "export", "cron": "0 * * * *", "priority": 42},
                              tenant_id="acme", now=NOW)
    [problem] = caught.value.problems
    assert problem.field == "priority" and "1..10" in problem.message


def _letter(original: str) -> DeadLetter:
    return DeadLetter.from_record("jobs.export.dead-letter", 0, 7, 0, b"acme", b"{}",
                                  [(headers.ORIGINAL_TOPIC, original.encode())])


def test_a_dead_letter_of_any_tier_replays_to_the_tier_it_came_from():
    for tier_topic in topics.tier_topics("export"):
        assert replay_destination(_letter(tier_topic)) == tier_topic
    with pytest.raises(NotReplayable, match="is not a tier of export"):
        replay_destination(_letter("jobs.export.urgent"))


def test_a_payload_model_cannot_take_priority_from_the_event():
    class NeedsPriority(BaseModel):
        priority: int

    from cronbus.streams.catalog import EventType, always
    with pytest.raises(CatalogError, match="lacks priority"):
        Catalog.of([JobType("a", call=CALL, payload=NeedsPriority)],
                   [EventType(topics.ENTITY_MODIFIED, EntityModified, always("a"))])
