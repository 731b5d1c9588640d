"""Schedule definitions: what is accepted, and errors that name the field."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from cronbus.agents.ingest.service import immediate_job
from cronbus.streams.events import CronTick, parse_event
from cronbus.streams.jobs import job_id_for
from cronbus.streams.schedules import (
    InvalidSchedule,
    decode_schedule,
    schedule_from_request,
    schedule_key,
    tick_id,
    tick_trigger_ref,
)
from cronbus.streams.topics import CRON_TICKS
from tests.seeds import MODELS

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)


def request(**fields: object) -> dict:
    return {"id": "nightly", "job_type": "bank-sync", "cron": "30 2 * * *", **fields}


def problem_fields(body: dict) -> list[str]:
    with pytest.raises(InvalidSchedule) as caught:
        schedule_from_request(body, tenant_id="acme", now=NOW)
    return [p.field for p in caught.value.problems]


@pytest.mark.parametrize("changes, field", [
    ({"cron": "61 * * * *"}, "cron"),
    ({"cron": "* * *"}, "cron"),
    ({"timezone": "Mars/Olympus"}, "timezone"),
    ({"every_ms": 5000}, "every_ms"),
    ({"cron": None}, "cron"),
    ({"cron": None, "every_ms": 10}, "every_ms"),
    ({"cron": None, "run_at": "tomorrow"}, "run_at"),
    ({"cron": None, "run_at": "2026-06-02T00:00:00"}, "run_at"),  # no zone: ambiguous
    ({"start_at": "2026-07-01T00:00:00Z", "end_at": "2026-06-01T00:00:00Z"}, "end_at"),
    ({"limit": 0}, "limit"),
    ({"cron": None, "run_at": "2026-07-01T00:00:00Z", "limit": 2}, "limit"),
    ({"cron": None, "delay_ms": -5}, "delay_ms"),
    ({"misfire": "sometimes"}, "misfire"),
    ({"overlap": "queue"}, "overlap"),
    ({"job_type": "Laundry Day"}, "job_type"),
    ({"clock": "world"}, "cron"),  # a world-clock schedule has no cron
    ({"clock": "world", "cron": None, "every_ms": 60_000}, "start_at"),  # its anchor
    ({"clock": "moon"}, "clock"),
    ({"tenant_id": "other"}, "tenant_id"),
    ({"id": "has space"}, "id"),
])
def test_bad_definitions_name_the_field(changes, field):
    assert field in problem_fields(request(**changes))


def test_a_delay_becomes_run_at_and_a_missing_id_comes_from_the_definition():
    body = {"job_type": "export", "delay_ms": 90_000}
    first = schedule_from_request(body, tenant_id="acme", now=NOW)
    again = schedule_from_request(body, tenant_id="acme", now=NOW)
    assert first.kind == "once" and first.run_at == datetime(2026, 6, 1, 12, 1, 30, tzinfo=UTC)
    assert first.id == again.id and first.name == first.id
    other_tenant = schedule_from_request(body, tenant_id="globex", now=NOW)
    assert other_tenant.id != first.id


def test_a_stored_schedule_round_trips_and_compares_by_definition():
    schedule = schedule_from_request(request(payload={"a": 1}), tenant_id="acme", now=NOW)
    stored = decode_schedule(schedule.encode())
    assert stored == schedule and stored.key == schedule_key("acme", "nightly") == b"acme/nightly"
    later = schedule_from_request(request(payload={"a": 1}), tenant_id="acme", now=datetime.now(UTC))
    assert later.same_definition(schedule) and later != schedule
    moved = schedule_from_request(request(cron="0 3 * * *"), tenant_id="acme", now=NOW)
    assert not moved.same_definition(schedule) and not moved.same_timing(schedule)


def test_tick_ids_are_deterministic_and_the_job_id_matches_what_ingest_derives():
    fire_at = datetime(2026, 6, 1, 2, 30, 0, 250_000, tzinfo=UTC)
    key = schedule_key("acme", "nightly")
    assert tick_id(key, fire_at) == tick_id(key, fire_at.astimezone())
    assert tick_id(key, fire_at) != tick_id(schedule_key("globex", "nightly"), fire_at)
    tick = CronTick(event_id=tick_id(key, fire_at), tenant_id="acme", occurred_at=NOW,
                    schedule_id="nightly", job_type="bank-sync", fire_at=fire_at)
    parsed = parse_event(CRON_TICKS, tick.model_dump_json().encode(), max_bytes=10_000, models=MODELS)
    assert isinstance(parsed, CronTick)
    job = immediate_job(parsed, "bank-sync", 0.0)
    assert job.job_id == job_id_for("acme", "bank-sync", tick_trigger_ref("nightly", fire_at))
