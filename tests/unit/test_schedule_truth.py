"""Schedules say what will really happen (issue 18, items 2 and 3): every bad field of a body in
one answer, a canonical identity, intervals anchored where they start, previews that honour
``limit`` and ``end_at`` from any time, a fired count the ticker agrees with, and every time in
UTC."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from cronbus.agents.schedules.api_rules import (
    VIEW_ONLY,
    FireProgress,
    catalog_problems,
    fire_progress,
    manual_tick,
    next_runs,
    query_time,
    run_view,
    schedule_view,
)
from cronbus.agents.schedules.book import FireState, plan, state_for
from cronbus.agents.schedules.cron import preview
from cronbus.streams.jobs import status_answer
from cronbus.streams.schedule_runs import FiredRun
from cronbus.streams.schedules import (
    InvalidSchedule,
    Schedule,
    decode_schedule,
    derived_schedule_id,
    prepare_upsert,
    schedule_from_request,
)
from tests.seeds import SEEDS

NOW = datetime(2026, 6, 1, 12, 0, 0, 123_000, tzinfo=UTC)
GRACE = timedelta(seconds=10)


def problems(body: object, **options: object) -> dict[str, str]:
    with pytest.raises(InvalidSchedule) as caught:
        schedule_from_request(body, tenant_id="acme", now=NOW, **options)  # type: ignore[arg-type]
    fields = [p.field for p in caught.value.problems]
    assert len(fields) == len(set(fields)), "each field is named once"
    return {p.field: p.message for p in caught.value.problems}


# --- item 2: every bad field in one answer ------------------------------------------------------

def test_four_bad_fields_are_four_problems_in_one_answer():
    body = {"job_type": "no-such-type", "cron": "61 * * * *", "timezone": "Mars/Olympus",
            "every_ms": 5}
    found = problems(body, extra_problems=catalog_problems(body, SEEDS))
    assert set(found) == {"job_type", "cron", "timezone", "every_ms"}
    assert "no-such-type" in found["job_type"]
    assert "'61 * * * *' is not a cron pattern" in found["cron"]
    assert "'Mars/Olympus' is not an IANA time zone" in found["timezone"]
    assert "greater than or equal to 1000" in found["every_ms"]
    assert "exactly one of cron, every_ms or run_at" in found["every_ms"]  # and both were given


def test_the_rules_between_fields_are_checked_even_when_the_model_refuses_one():
    found = problems({"job_type": "export", "cron": "nope", "timezone": "Nowhere/Town",
                      "limit": 0, "delay_ms": -1, "tenant_id": "globex"})
    assert set(found) == {"cron", "timezone", "limit", "delay_ms", "tenant_id"}


@pytest.mark.parametrize("body, kind", [([1, 2], "an array"), ("text", "a string"),
                                        (7, "a number"), (None, "null")])
def test_a_body_that_is_not_an_object_is_reported_as_body(body, kind):
    found = problems(body)
    assert list(found) == ["body"] and found["body"].endswith(f"got {kind}")


# --- item 3: one identity for one definition ----------------------------------------------------

def derived(body: dict, **options: object) -> str:
    return schedule_from_request(body, tenant_id="acme", now=NOW, **options).id  # type: ignore[arg-type]


def test_the_same_definition_spelled_with_its_defaults_or_other_whitespace_is_one_schedule():
    plain = derived({"job_type": "export", "cron": "0 5 * * *"}, default_timezone="UTC")
    assert plain == derived({"job_type": "export", "cron": "0 5 * * *", "timezone": "UTC"})
    assert plain == derived({"job_type": "export", "cron": "  0   5 * *\t* "})
    assert plain == derived({"job_type": "export", "cron": "0 5 * * *", "misfire": "run_once",
                             "overlap": "allow", "enabled": True, "payload": {}})
    assert plain != derived({"job_type": "export", "cron": "0 6 * * *"})
    assert plain != derived({"job_type": "export", "cron": "0 5 * * *", "timezone": "Asia/Tokyo"})
    # a job type's own zone is its default too (exports: Europe/Berlin)
    berlin = derived({"job_type": "export", "cron": "0 5 * * *"}, default_timezone="Europe/Berlin")
    assert berlin == derived({"job_type": "export", "cron": "0 5 * * *",
                              "timezone": "Europe/Berlin"}, default_timezone="Europe/Berlin")
    # a time is one instant in any offset; a name given is part of what it says
    assert derived({"job_type": "export", "run_at": "2026-07-01T02:00:00+02:00"}) == \
        derived({"job_type": "export", "run_at": "2026-07-01T00:00:00Z"})
    assert derived({"job_type": "export", "cron": "0 5 * * *", "name": "five"}) != plain


def test_the_cron_pattern_is_stored_with_one_space_between_fields():
    s = schedule_from_request({"id": "x", "job_type": "export", "cron": " 0  5 * *  * "},
                              tenant_id="acme", now=NOW)
    assert s.cron == "0 5 * * *"
    assert schedule_from_request({"id": "x", "job_type": "export", "cron": "@Daily"},
                                 tenant_id="acme", now=NOW).cron == "@daily"


def test_a_schedule_stored_under_the_earlier_rules_id_is_found_again_by_the_same_body():
    body = {"job_type": "export", "cron": "0 5 * * *", "timezone": "UTC"}
    canonical = derived(body)
    # what releases before derived: a digest of the body as sent
    import hashlib
    legacy = "s-" + hashlib.sha256(
        f"acme\x1f{json.dumps(body, sort_keys=True, default=str)}".encode()).hexdigest()[:24]
    assert legacy != canonical
    assert derived(body, is_stored=lambda sid: sid == legacy) == legacy
    assert derived(body, is_stored=lambda sid: sid in (legacy, canonical)) == canonical
    assert derived(body, is_stored=lambda sid: False) == canonical
    # the schedule an earlier release stored (no created_at, named by its id): found again,
    # and as the same definition nothing is written
    stored = Schedule.model_validate({**body, "id": legacy, "name": legacy, "tenant_id": "acme",
                                      "revision_at": NOW - timedelta(days=30)})
    again = schedule_from_request(body, tenant_id="acme", now=NOW,
                                  is_stored=lambda sid: sid == legacy)
    assert (again.id, again.name) == (legacy, legacy)
    assert prepare_upsert(again, stored, NOW) is None


def test_created_at_is_the_first_writes_and_not_part_of_the_definition():
    first = prepare_upsert(interval(created_at=NOW), None, NOW)
    assert first is not None and first.created_at == NOW
    later = NOW + timedelta(days=3)
    assert prepare_upsert(interval(created_at=later, revision_at=later), first, later) is None
    renamed = prepare_upsert(interval(name="other", created_at=later), first, later)
    assert renamed is not None and renamed.created_at == NOW and renamed.revision_at == NOW
    faster = prepare_upsert(interval(every_ms=30_000, created_at=later), first, later)
    assert faster is not None and faster.created_at == NOW and faster.revision_at == later
    # a record from before created_at was kept stays without one: it keeps its epoch grid
    old = interval()
    assert prepare_upsert(interval(name="other", created_at=later), old, later).created_at is None
    # a request cannot set it
    assert schedule_from_request({"id": "x", "job_type": "export", "every_ms": 60_000,
                                  "created_at": "2020-01-01T00:00:00Z"},
                                 tenant_id="acme", now=NOW).created_at == NOW


def test_a_record_stored_before_created_at_and_canonical_ids_still_loads():
    old = (b'{"id":"s-0123456789abcdef01234567","tenant_id":"acme","name":"s-0123456789abcdef0'
           b'1234567","job_type":"export","cron":"0  5 * * *","timezone":"UTC",'
           b'"revision_at":"2026-01-01T00:00:00Z"}')
    s = decode_schedule(old)
    assert s.created_at is None and s.cron == "0 5 * * *"
    assert decode_schedule(s.encode()) == s


def test_a_derived_id_does_not_change_when_a_later_field_with_a_default_is_added():
    # defaults are left out of the digest, so a new optional field leaves every id as it was
    s = schedule_from_request({"job_type": "export", "cron": "0 5 * * *"}, tenant_id="acme",
                              now=NOW)
    assert derived_schedule_id(s, named=False) == s.id


# --- item 3: intervals anchored where they start ------------------------------------------------

def interval(**fields: object) -> Schedule:
    return Schedule.model_validate({"id": "every", "tenant_id": "acme", "name": "every",
                                    "job_type": "export", "every_ms": 60_000, **fields})


def test_an_interval_is_anchored_at_its_creation_not_the_epoch():
    made = schedule_from_request({"id": "every", "job_type": "export", "every_ms": 60_000},
                                 tenant_id="acme", now=NOW)
    assert made.created_at == NOW and made.anchor == NOW
    assert preview(made, NOW, 3) == [NOW + timedelta(minutes=n) for n in (1, 2, 3)]
    # the same after a restart, a handover, on every ticker: it is in the stored record
    assert preview(decode_schedule(made.encode()), NOW + timedelta(seconds=90), 1) == \
        [NOW + timedelta(minutes=2)]


def test_start_at_is_the_anchor_when_given_and_a_fire_time_itself():
    start = NOW + timedelta(hours=1, milliseconds=7)
    made = schedule_from_request({"id": "every", "job_type": "export", "every_ms": 60_000,
                                  "start_at": start.isoformat()}, tenant_id="acme", now=NOW)
    assert preview(made, NOW, 2) == [start, start + timedelta(minutes=1)]


def test_a_record_without_created_at_keeps_the_epoch_grid_it_had():
    assert preview(interval(), NOW, 2) == [datetime(2026, 6, 1, 12, 1, tzinfo=UTC),
                                          datetime(2026, 6, 1, 12, 2, tzinfo=UTC)]


def test_the_ticker_fires_an_interval_on_its_anchor():
    made = schedule_from_request({"id": "every", "job_type": "export", "every_ms": 60_000},
                                 tenant_id="acme", now=NOW)
    state = state_for(made, None, NOW)
    outcome = plan(made, state, NOW + timedelta(minutes=1), grace=GRACE, previous_active=False,
                   poll=timedelta(seconds=1))
    assert outcome.fires == [NOW + timedelta(minutes=1)]
    assert outcome.wake_at == NOW + timedelta(minutes=2)


# --- item 3: previews from any time, honouring limit and end_at ---------------------------------

def daily(**fields: object) -> Schedule:
    return schedule_from_request({"id": "daily", "job_type": "export", "cron": "30 2 * * *",
                                  "timezone": "Europe/Berlin", **fields},
                                 tenant_id="acme", now=NOW)


def utc_times(answer: dict) -> list[str]:
    return [n["utc"] for n in answer["next"]]


def test_after_previews_any_day_for_instance_next_years_change_in_its_zone():
    answer = next_runs(daily(), NOW, 2, after=datetime(2027, 3, 27, 12, tzinfo=UTC))
    assert [n["at"] for n in answer["next"]] == ["2027-03-28T03:00:00+02:00",
                                                 "2027-03-29T02:30:00+02:00"]
    assert answer["after"] == "2027-03-27T12:00:00+00:00"
    past = next_runs(daily(), NOW, 1, after=datetime(2026, 3, 28, 12, tzinfo=UTC))
    assert [n["at"] for n in past["next"]] == ["2026-03-29T03:00:00+02:00"]


def test_a_schedule_that_reached_its_limit_shows_no_next_runs():
    s = daily(limit=3)
    reached = FireProgress(fired=3, exhausted=True)
    answer = next_runs(s, NOW, 5, progress=reached)
    assert answer["next"] == [] and answer["exhausted"] is True and answer["remaining"] == 0
    assert next_runs(s, NOW, 5, after=NOW + timedelta(days=9), progress=reached)["next"] == []


def test_a_limit_leaves_only_as_many_next_runs_as_are_left_whatever_after_says():
    s = daily(limit=3)
    one_left = FireProgress(fired=2)
    assert utc_times(next_runs(s, NOW, 5, progress=one_left)) == ["2026-06-02T00:30:00+00:00"]
    assert next_runs(s, NOW, 5, after=NOW + timedelta(days=2), progress=one_left)["next"] == []
    # three left: the third from now is the last, however far on after is
    left = next_runs(s, NOW, 5, after=NOW + timedelta(days=1, hours=12),
                     progress=FireProgress(fired=0))
    assert utc_times(left) == ["2026-06-03T00:30:00+00:00", "2026-06-04T00:30:00+00:00"]


def test_end_at_ends_the_preview_from_any_after():
    s = daily(end_at="2026-06-03T01:00:00Z")
    assert utc_times(next_runs(s, NOW, 5)) == ["2026-06-02T00:30:00+00:00",
                                               "2026-06-03T00:30:00+00:00"]
    assert next_runs(s, NOW, 5, after=datetime(2026, 6, 3, 1, tzinfo=UTC))["next"] == []


def test_after_must_be_an_iso_time_with_its_offset():
    assert query_time({"after": "2027-03-28T00:00:00Z"}, "after") == datetime(2027, 3, 28,
                                                                               tzinfo=UTC)
    assert query_time({"after": "2027-03-28T02:00:00 02:00"}, "after") == datetime(
        2027, 3, 28, tzinfo=UTC)  # a '+' a shell left unencoded arrives as a space
    assert query_time({"after": "2027-03-28 00:00:00Z"}, "after") == datetime(2027, 3, 28,
                                                                               tzinfo=UTC)
    assert query_time({}, "after") is None
    for bad in ("tomorrow", "2027-03-28T00:00:00", "2027-13-01T00:00:00Z"):
        with pytest.raises(InvalidSchedule) as caught:
            query_time({"after": bad}, "after")
        assert [p.field for p in caught.value.problems] == ["after"]


# --- item 3: how many times it fired, by the ticker's own count ---------------------------------

def fire_through_the_ticker(s: Schedule, minutes: int) -> FireState:
    """What the ticker's plans make of ``s`` minute by minute: the state it saves."""
    state = state_for(s, None, NOW)
    for minute in range(1, minutes + 1):
        outcome = plan(s, state, NOW + timedelta(minutes=minute), grace=GRACE,
                       previous_active=False, poll=timedelta(seconds=1))
        state = outcome.state
    return state


def test_the_view_counts_what_the_ticker_fired_and_agrees_with_it_on_the_limit():
    s = schedule_from_request({"id": "three", "job_type": "export", "every_ms": 60_000,
                               "limit": 3}, tenant_id="acme", now=NOW)
    two = fire_through_the_ticker(s, 2)
    progress = fire_progress(s, two.encode(), NOW + timedelta(minutes=2))
    assert progress == FireProgress(fired=2, exhausted=False)
    view = schedule_view(s, progress=progress, next_at=NOW + timedelta(minutes=3))
    assert (view["fired"], view["remaining"], view["exhausted"]) == (2, 1, False)
    assert view["next_run_at"] == (NOW + timedelta(minutes=3)).isoformat()
    assert utc_times(next_runs(s, NOW + timedelta(minutes=2), 5, progress=progress)) == [
        (NOW + timedelta(minutes=3)).isoformat()]

    done = fire_through_the_ticker(s, 10)
    assert done.fired == 3, "the ticker stops at the limit"
    progress = fire_progress(s, done.encode(), NOW + timedelta(minutes=10))
    assert progress == FireProgress(fired=3, exhausted=True)
    view = schedule_view(s, progress=progress, next_at=NOW + timedelta(minutes=11))
    assert (view["fired"], view["remaining"], view["exhausted"]) == (3, 0, True)
    assert view["next_run_at"] is None
    assert next_runs(s, NOW + timedelta(minutes=10), 5, progress=progress)["next"] == []


def test_a_timing_change_keeps_the_count_as_the_ticker_does():
    s = schedule_from_request({"id": "three", "job_type": "export", "every_ms": 60_000,
                               "limit": 3}, tenant_id="acme", now=NOW)
    done = fire_through_the_ticker(s, 10)
    later = NOW + timedelta(hours=1)
    moved = s.model_copy(update={"every_ms": 30_000, "revision_at": later})
    assert fire_progress(moved, done.encode(), later) == FireProgress(fired=3, exhausted=True)
    more = moved.model_copy(update={"limit": 5})
    assert fire_progress(more, done.encode(), later) == FireProgress(fired=3, exhausted=False)


def test_a_one_off_is_exhausted_once_fired_and_not_before_even_when_late():
    once = schedule_from_request({"id": "once", "job_type": "export",
                                  "run_at": (NOW - timedelta(minutes=5)).isoformat()},
                                 tenant_id="acme", now=NOW)
    assert fire_progress(once, None, NOW) == FireProgress(fired=0, exhausted=False)
    fired = plan(once, state_for(once, None, NOW), NOW, grace=GRACE, previous_active=False,
                 poll=timedelta(seconds=1)).state
    assert fire_progress(once, fired.encode(), NOW) == FireProgress(fired=1, exhausted=True)


def test_a_schedule_past_its_end_is_exhausted_and_never_fired_is_zero():
    ended = daily(end_at="2026-05-01T00:00:00Z")
    assert fire_progress(ended, None, NOW) == FireProgress(fired=0, exhausted=True)
    assert fire_progress(daily(), b"not a state", NOW) == FireProgress(fired=0, exhausted=False)


# --- item 3: every time in UTC ----------------------------------------------------------------

def test_a_schedule_view_shows_every_time_in_utc():
    s = daily(start_at="2026-07-01T09:00:00+02:00", end_at="2026-08-01T00:00:00-05:00")
    view = schedule_view(s, last_run=FiredRun("r", "j", NOW.isoformat(), "schedule", 1e9))
    assert view["start_at"] == "2026-07-01T07:00:00+00:00"
    assert view["end_at"] == "2026-08-01T05:00:00+00:00"
    assert view["revision_at"] == view["created_at"] == NOW.isoformat()
    assert view["last_run_at"] == "2001-09-09T01:46:40+00:00" and view["run_at"] is None
    assert set(VIEW_ONLY) <= set(view)


def test_a_run_and_a_job_status_show_their_times_in_utc():
    run = FiredRun("r", "j", NOW.isoformat(), "manual", 1_000_000_000.0)
    shown = run_view(run, {"state": "completed", "attempts": 1, "started_at": 1_000_000_001.0,
                           "finished_at": 1_000_000_002.5})
    assert shown["emitted_at"] == "2001-09-09T01:46:40+00:00"
    assert shown["started_at"] == "2001-09-09T01:46:41+00:00"
    assert shown["finished_at"] == "2001-09-09T01:46:42.500000+00:00"
    status = status_answer({"state": "retry_due", "attempts": 2, "updated_at": 1_000_000_000.0,
                            "due_at": 1_000_000_060.0, "last_error": "x"})
    assert status["updated_at"] == "2001-09-09T01:46:40+00:00"
    assert status["due_at"] == "2001-09-09T01:47:40+00:00" and status["attempts"] == 2


def test_a_retried_trigger_says_the_first_runs_fire_time():
    s = daily()
    first = manual_tick(s, NOW, "k1")
    retry = manual_tick(s, NOW + timedelta(seconds=30), "k1", first_at=first.fire_at)
    assert retry.event_id == first.event_id and retry.fire_at == first.fire_at == NOW
    assert retry.model_dump() == first.model_dump(), "the very same tick, so the same job"
