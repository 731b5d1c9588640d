from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cronbus.agents.ingest.service import immediate_job
from cronbus.agents.schedules.api_rules import (
    distinct_runs,
    idempotency_key,
    manual_tick,
    next_runs,
    problems_body,
    query_count,
    run_view,
    schedule_view,
    with_enabled,
)
from cronbus.clients.redis.api_tokens import (
    bearer_token,
    configured_grant,
    settings_grants,
    token_digest,
)
from cronbus.streams.events import CronTick, parse_event
from cronbus.streams.schedule_runs import FiredRun
from cronbus.streams.schedules import InvalidSchedule, schedule_from_request, tick_id, tick_job_id
from cronbus.streams.settings import SettingsError, load_settings
from cronbus.streams.topics import CRON_TICKS
from tests.seeds import MODELS

NOW = datetime(2026, 3, 28, 12, 0, tzinfo=UTC)


def berlin_daily():
    return schedule_from_request({"id": "daily", "job_type": "export", "cron": "30 2 * * *",
                                  "timezone": "Europe/Berlin", "payload": {"x": 1}},
                                 tenant_id="acme", now=NOW)


@pytest.mark.parametrize("header, token", [
    ("Bearer abc", "abc"), ("bearer  abc ", "abc"), ("Basic abc", None), ("Bearer", None),
    ("", None), (None, None), ("abc", None),
])
def test_bearer_token(header, token):
    assert bearer_token(header) == token


def test_token_lookup_finds_only_the_exact_token():
    grants = settings_grants({"t-a": "acme", "t-b": "globex", "t-s": "system"}, "system")
    assert all(len(digest) == 64 and "t-" not in digest for digest in grants)

    def tenant(token: str) -> str | None:
        grant = configured_grant(token_digest(token), grants)
        return grant.tenant_id if grant else None

    assert tenant("t-a") == "acme" and tenant("t-b") == "globex"
    assert tenant("t-") is None and tenant("t-a ") is None
    assert [configured_grant(token_digest(t), grants).scope  # type: ignore[union-attr]
            for t in ("t-a", "t-s")] == ["tenant", "system"]


def test_tokens_from_settings_and_an_error_that_hides_them(monkeypatch):
    monkeypatch.setenv("CRONBUS_WEB_API_TOKENS", "t-a:acme, t-b:tenant:b")
    assert load_settings().api_token_tenants() == {"t-a": "acme", "t-b": "tenant:b"}
    monkeypatch.setenv("CRONBUS_WEB_API_TOKENS", "s3cret-without-tenant")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert "CRONBUS_WEB_API_TOKENS" in str(caught.value)
    assert "s3cret" not in str(caught.value)
    monkeypatch.setenv("CRONBUS_WEB_API_TOKENS", "tok:bad tenant")
    with pytest.raises(SettingsError, match="pair 1: the tenant"):
        load_settings()


@pytest.mark.parametrize("raw, expected", [(None, 5), ("", 5), ("1", 1), ("100", 100)])
def test_query_count(raw, expected):
    query = {} if raw is None else {"count": raw}
    assert query_count(query, "count", default=5, maximum=100) == expected


@pytest.mark.parametrize("raw", ["0", "101", "-1", "x", "1.5"])
def test_a_bad_count_names_the_parameter(raw):
    with pytest.raises(InvalidSchedule) as caught:
        query_count({"count": raw}, "count", default=5, maximum=100)
    assert problems_body(caught.value)["problems"][0]["field"] == "count"


def test_idempotency_key():
    assert idempotency_key({}) is None
    assert idempotency_key({"Idempotency-Key": " k1 "}) == "k1"
    with pytest.raises(InvalidSchedule, match="Idempotency-Key"):
        idempotency_key({"Idempotency-Key": "x" * 201})


def test_pause_and_resume_start_afresh_and_are_idempotent():
    schedule = berlin_daily()
    later = NOW + timedelta(hours=1)
    paused = with_enabled(schedule, False, later)
    assert not paused.enabled and paused.revision_at == later
    assert with_enabled(paused, False, later + timedelta(hours=1)) is paused
    resumed = with_enabled(paused, True, later + timedelta(hours=2))
    assert resumed.enabled and resumed.revision_at == later + timedelta(hours=2)
    assert schedule_view(paused)["paused"] is True


def test_next_runs_are_in_the_schedules_zone_across_spring_forward():
    preview = next_runs(berlin_daily(), NOW, 3)
    assert [n["at"] for n in preview["next"]] == [
        "2026-03-29T03:00:00+02:00",  # 02:30 does not exist on the change day: right after it
        "2026-03-30T02:30:00+02:00",
        "2026-03-31T02:30:00+02:00",
    ]
    assert preview["next"][0]["utc"] == "2026-03-29T01:00:00+00:00"


def test_a_paused_schedule_previews_nothing():
    paused = with_enabled(berlin_daily(), False, NOW)
    assert next_runs(paused, NOW, 3) == {"schedule_id": "daily", "timezone": "Europe/Berlin",
                                         "clock": "wall", "paused": True,
                                         "after": "2026-03-28T12:00:00+00:00", "fired": 0,
                                         "remaining": None, "exhausted": False, "next": []}


def test_a_manual_tick_has_its_own_deterministic_id_and_job():
    schedule = berlin_daily()
    first = manual_tick(schedule, NOW, "k1")
    again = manual_tick(schedule, NOW + timedelta(seconds=5), "k1")
    other = manual_tick(schedule, NOW, "k2")
    unkeyed = manual_tick(schedule, NOW, None)
    assert first.event_id == again.event_id != other.event_id
    assert unkeyed.event_id not in (first.event_id, manual_tick(schedule, NOW, None).event_id + "x")
    assert unkeyed.event_id == manual_tick(schedule, NOW, None).event_id
    assert first.event_id != tick_id(schedule.key, NOW)
    scheduled = CronTick(event_id=tick_id(schedule.key, NOW), tenant_id="acme", occurred_at=NOW,
                         schedule_id="daily", job_type=schedule.job_type, fire_at=NOW)
    assert tick_job_id(first) != tick_job_id(scheduled)
    assert first.payload == {"x": 1} and first.trigger == "manual"


@pytest.mark.parametrize("trigger", ["schedule", "manual"])
def test_the_run_job_id_is_the_job_ingest_makes_from_the_tick_on_the_wire(trigger):
    tick = CronTick(event_id="tick-1", tenant_id="acme", occurred_at=NOW, schedule_id="daily",
                    job_type="export", fire_at=NOW + timedelta(milliseconds=250), trigger=trigger)
    on_the_wire = parse_event(CRON_TICKS, tick.model_dump_json().encode(), max_bytes=10_000, models=MODELS)
    assert isinstance(on_the_wire, CronTick)
    job = immediate_job(on_the_wire, on_the_wire.job_type, NOW.timestamp())
    assert FiredRun.of_tick(tick, 0.0).job_id == job.job_id
    assert job.triggered_by == ("manual" if trigger == "manual" else "cron")


def run(run_id: str = "r1") -> FiredRun:
    return FiredRun(run_id=run_id, job_id="export-1", fire_at="2026-03-28T12:00:00+00:00",
                    trigger="schedule", emitted_at=1.0)


@pytest.mark.parametrize("job_state, state", [
    ("waiting", "waiting"), ("active", "active"), ("retry_due", "retry_due"),
    ("completed", "completed"), ("dead_lettered", "dead_lettered"),
    ("failed", "retry_due"), ("dead", "dead_lettered"),  # as stored before the names changed
])
def test_a_runs_state_comes_from_its_jobs_status(job_state, state):
    view = run_view(run(), {"state": job_state, "attempts": 2, "started_at": 1.0,
                            "finished_at": 2.5, "last_error": "HTTP 500"})
    assert view["state"] == state and view["attempts"] == 2 and view["error"] == "HTTP 500"
    assert view["finished_at"] == "1970-01-01T00:00:02.500000+00:00"


def test_a_run_without_a_status_is_waiting():
    assert run_view(run(), None)["state"] == "waiting"


def test_runs_round_trip_and_doubles_are_shown_once():
    assert FiredRun.from_dict(run().as_dict()) == run()
    assert [r.run_id for r in distinct_runs([run("b"), run("a"), run("b")])] == ["b", "a"]
