"""Backfill's pure parts: a range's fire times and their ids, the bound, the request body."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cronbus.agents.cli.main import _backfill_summary
from cronbus.agents.ingest.service import immediate_job
from cronbus.agents.schedules.api_rules import (
    BackfillRange,
    TooManyRuns,
    backfill_answer,
    backfill_range,
    backfill_run,
    backfill_tick,
    backfill_tick_id,
    backfill_times,
    manual_tick,
    problems_body,
    with_enabled,
)
from cronbus.streams.events import parse_event
from cronbus.streams.schedule_runs import FiredRun
from cronbus.streams.schedules import Schedule, schedule_from_request, tick_id, tick_job_id
from cronbus.streams.settings import SettingsError, load_settings
from cronbus.streams.topics import CRON_TICKS
from tests.seeds import MODELS
from tests.unit.test_schedules_cli import request

NOW = datetime(2026, 3, 28, 12, 0, tzinfo=UTC)
H = timedelta(hours=1)


def schedule(**fields: Any) -> Schedule:
    definition = {"id": "hourly", "job_type": "export", "cron": "0 * * * *", "payload": {"x": 1},
                  **fields}
    return schedule_from_request(definition, tenant_id="acme", now=NOW)


def at(hour: int, minute: int = 0, day: int = 28) -> datetime:
    return datetime(2026, 3, day, hour, minute, tzinfo=UTC)


def times(s: Schedule, start: datetime, end: datetime, *, max_runs: int = 1000,
          now: datetime = NOW) -> list[datetime]:
    return backfill_times(s, BackfillRange(start, end), now, max_runs)


# --- the range's fire times ----------------------------------------------------------------

def test_both_ends_are_inclusive():
    assert times(schedule(), at(1), at(5)) == [at(h) for h in range(1, 6)]
    assert times(schedule(), at(0, 30), at(5, 30)) == [at(h) for h in range(1, 6)]
    assert times(schedule(), at(1, 0) + timedelta(microseconds=500), at(2)) == [at(2)]
    assert times(schedule(), at(1, 1), at(1, 59)) == []


def test_a_paused_schedule_and_one_past_its_limit_are_backfilled_all_the_same():
    paused = with_enabled(schedule(limit=2), False, NOW)
    assert times(paused, at(1), at(5)) == [at(h) for h in range(1, 6)]


def test_a_range_before_the_schedule_was_made_is_backfilled():
    # revision_at (when its timing last changed) is where the ticker starts, not a backfill
    assert schedule().revision_at == NOW
    assert times(schedule(), at(1, day=20), at(3, day=20)) == [at(h, day=20) for h in (1, 2, 3)]


def test_start_at_and_end_at_clip_the_range():
    clipped = schedule(start_at=at(2).isoformat(), end_at=at(4).isoformat())
    assert times(clipped, at(0), at(8)) == [at(2), at(3), at(4)]


def test_fire_times_come_from_the_schedule_s_zone_across_daylight_saving():
    # Berlin falls back on 2026-10-25: an hourly pattern runs every real hour, 25 that day
    berlin = schedule(timezone="Europe/Berlin")
    day = times(berlin, datetime(2026, 10, 24, 22, tzinfo=UTC),  # midnight CEST .. CET
                datetime(2026, 10, 25, 23, tzinfo=UTC) - timedelta(seconds=1),
                now=datetime(2026, 11, 1, tzinfo=UTC))
    assert len(day) == 25 and len(set(day)) == 25
    daily = schedule(cron="30 2 * * *", timezone="Europe/Berlin")
    assert times(daily, datetime(2026, 3, 28, tzinfo=UTC), datetime(2026, 3, 30, tzinfo=UTC),
                 now=datetime(2026, 4, 1, tzinfo=UTC)) == [
        datetime(2026, 3, 28, 1, 30, tzinfo=UTC),  # 02:30 CET
        datetime(2026, 3, 29, 1, 0, tzinfo=UTC),  # 02:30 does not exist: at the change, 03:00 CEST
    ]


def test_intervals_and_one_offs():
    every = schedule(cron=None, every_ms=30 * 60_000, start_at=at(0).isoformat())
    assert times(every, at(1), at(2)) == [at(1), at(1, 30), at(2)]
    once = schedule(cron=None, run_at=at(3).isoformat())
    assert times(once, at(1), at(5)) == [at(3)]
    assert times(once, at(4), at(5)) == []


# --- the bound ------------------------------------------------------------------------------

def test_at_most_max_runs_fire_times_a_request():
    assert len(times(schedule(), at(1), at(5), max_runs=5)) == 5
    with pytest.raises(TooManyRuns) as caught:
        times(schedule(), at(1), at(6), max_runs=5)
    assert caught.value.max_to == at(5)  # the 5th: end there, go on after it
    body = problems_body(caught.value)
    assert body["max_runs"] == 5 and body["max_to"] == "2026-03-28T05:00:00+00:00"
    assert [p["field"] for p in body["problems"]] == ["to"]
    assert "more than 5 fire times" in body["problems"][0]["message"]


def test_a_huge_range_is_refused_without_walking_all_of_it():
    every_second = schedule(cron=None, every_ms=1000, start_at="2000-01-01T00:00:00Z")
    with pytest.raises(TooManyRuns):  # 800 million fire times; only 1,001 are looked at
        times(every_second, datetime(2000, 1, 1, tzinfo=UTC), NOW)


def test_a_fire_time_still_to_come_is_refused():
    with pytest.raises(Exception) as caught:
        times(schedule(), at(10), at(14))
    assert problems_body(caught.value)["problems"][0]["field"] == "to"
    assert "2026-03-28T13:00:00+00:00 is still to come" in str(caught.value)
    # an end past now with no fire time after now is fine (a client's clock a little ahead)
    assert times(schedule(), at(10), NOW + timedelta(minutes=5)) == [at(10), at(11), at(12)]


# --- ids: the same range twice is the same runs and jobs ------------------------------------

def test_a_backfilled_tick_has_an_id_of_its_own_per_fire_time():
    s = schedule()
    first = backfill_tick(s, at(3), NOW)
    again = backfill_tick(s, at(3), NOW + H)  # another request, later
    assert first.event_id == again.event_id == backfill_tick_id(s.key, at(3))
    assert first.event_id.startswith("backfill-")
    assert backfill_tick(s, at(4), NOW).event_id != first.event_id
    assert first.event_id not in (tick_id(s.key, at(3)), manual_tick(s, at(3), None).event_id)
    other_tenant = schedule_from_request({"id": "hourly", "job_type": "export", "cron": "@hourly"},
                                         tenant_id="globex", now=NOW)
    assert backfill_tick(other_tenant, at(3), NOW).event_id != first.event_id
    assert first.fire_at == at(3) and first.trigger == "manual" and first.payload == {"x": 1}


def test_the_job_stands_for_its_fire_time_and_is_the_one_ingest_makes():
    s = schedule()
    tick = backfill_tick(s, at(3), NOW)
    wire = parse_event(CRON_TICKS, tick.model_dump_json().encode(), max_bytes=10_000,
                       models=MODELS)
    job = immediate_job(wire, wire.job_type, NOW.timestamp())  # type: ignore[union-attr]
    assert job.scheduled_at == at(3) and job.triggered_by == "manual"
    assert job.payload == {"schedule_id": "hourly", "x": 1}
    run = backfill_run(tick, NOW.timestamp())
    assert run.job_id == job.job_id == tick_job_id(tick)
    assert job.job_id == tick_job_id(backfill_tick(s, at(3), NOW + H))  # a second request
    assert job.job_id not in (s.job_id_at(at(3)), tick_job_id(manual_tick(s, at(3), None)))
    assert run.trigger == "backfill" and run.fire_at == "2026-03-28T03:00:00+00:00"
    assert FiredRun.from_dict(run.as_dict()) == run


def test_the_answer_lists_each_fire_time_sent_now_or_already():
    s = schedule(timezone="Europe/Berlin")
    window = BackfillRange(at(1), at(3))
    runs = [backfill_run(backfill_tick(s, t, NOW), NOW.timestamp()) for t in (at(1), at(2), at(3))]
    answer = backfill_answer(s, window, runs, {runs[0].job_id: 1000.0}, 1000)
    assert {k: answer[k] for k in ("count", "sent", "already", "max_runs")} == {
        "count": 3, "sent": 2, "already": 1, "max_runs": 1000}
    assert answer["from"] == "2026-03-28T01:00:00+00:00" and answer["schedule_id"] == "hourly"
    assert [r["already"] for r in answer["runs"]] == [True, False, False]
    # when each was sent (an earlier backfill's for the one already sent), ISO 8601 in UTC
    assert answer["runs"][0]["emitted_at"] == "1970-01-01T00:16:40+00:00"
    assert answer["runs"][1]["emitted_at"] == NOW.isoformat()
    assert answer["runs"][0]["at"] == "2026-03-28T02:00:00+01:00"
    assert {r["trigger"] for r in answer["runs"]} == {"backfill"}


# --- the request body -----------------------------------------------------------------------

def test_a_good_body():
    window = backfill_range({"from": "2026-03-01T00:00:00Z", "to": "2026-03-01T05:00:00+01:00"})
    assert window == BackfillRange(datetime(2026, 3, 1, tzinfo=UTC),
                                   datetime(2026, 3, 1, 4, tzinfo=UTC))


@pytest.mark.parametrize("body, fields", [
    ({}, ["from", "to"]),
    ({"from": "2026-03-01T00:00:00Z"}, ["to"]),
    ({"from": "2026-03-01T00:00:00", "to": "soon"}, ["from", "to"]),  # no offset; not a time
    ({"from": "2026-03-01T00:00:00Z", "to": "2026-03-02T00:00:00Z", "step": 1}, ["step"]),
    ({"from": "2026-03-02T00:00:00Z", "to": "2026-03-01T00:00:00Z"}, ["to"]),
    ({"from": "2026-03-01T00:00:00Z", "to": "2026-03-01T00:00:00Z"}, ["to"]),
    ([], ["body"]),
    ("2026", ["body"]),
])
def test_a_bad_body_names_every_field_at_once(body, fields):
    with pytest.raises(Exception) as caught:
        backfill_range(body)
    answer = problems_body(caught.value)  # type: ignore[arg-type]
    assert answer["error"] == "invalid request"
    assert [p["field"] for p in answer["problems"]] == fields, answer
    assert "max_runs" not in answer


def test_a_missing_or_naive_time_says_what_is_expected():
    with pytest.raises(Exception) as caught:
        backfill_range({"from": "2026-03-01T00:00:00"})
    messages = {p["field"]: p["message"] for p in problems_body(caught.value)["problems"]}  # type: ignore[arg-type]
    assert "timezone" in messages["from"] and "ISO-8601" in messages["from"]
    assert messages["to"].startswith("required")


# --- the setting and the command -------------------------------------------------------------

def test_the_maximum_is_a_setting(monkeypatch):
    assert load_settings().backfill_max_runs == 1000
    monkeypatch.setenv("CRONBUS_BACKFILL_MAX_RUNS", "50")
    assert load_settings().backfill_max_runs == 50
    monkeypatch.setenv("CRONBUS_BACKFILL_MAX_RUNS", "0")
    with pytest.raises(SettingsError, match="CRONBUS_BACKFILL_MAX_RUNS"):
        load_settings()


def test_the_command_sends_the_range_as_given():
    assert request("backfill", "s1", "--from", "2026-03-01T00:00:00Z", "--to", "x") == (
        "POST", "/schedules/s1/backfill",
        {"json": {"from": "2026-03-01T00:00:00Z", "to": "x"}})
    with pytest.raises(SystemExit):
        request("backfill", "s1", "--from", "2026-03-01T00:00:00Z")  # --to is required


def test_the_command_summarises_the_answer():
    s = schedule()
    runs = [backfill_run(backfill_tick(s, t, NOW), NOW.timestamp()) for t in (at(1), at(2))]
    answer = backfill_answer(s, BackfillRange(at(1), at(2)), runs, {runs[0].job_id: 1.0}, 1000)
    lines = _backfill_summary(answer).splitlines()
    assert lines[0] == ("backfill of hourly from 2026-03-28T01:00:00+00:00 to "
                        "2026-03-28T02:00:00+00:00: 2 fire time(s), 1 sent, 1 already "
                        "(at most 1000 a request)")
    assert lines[1].split() == ["2026-03-28T01:00:00+00:00", runs[0].run_id, "already"]
    assert lines[2].split() == ["2026-03-28T02:00:00+00:00", runs[1].run_id, "sent"]
