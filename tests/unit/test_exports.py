"""Scheduled exports' payloads, a job's result, the runs' statuses and the schedule view."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from cronbus.agents.processing.handlers import HandlerServices, JobContext
from cronbus.agents.schedules.api_rules import (
    RUN_STATUS,
    declared,
    default_timezone,
    run_view,
    schedule_view,
)
from cronbus.families.data import Export
from cronbus.streams.catalog import CatalogError, JobType
from cronbus.streams.jobs import Job, JobState
from cronbus.streams.schedule_runs import FiredRun
from cronbus.streams.schedules import InvalidSchedule, schedule_from_request
from cronbus.streams.settings import load_settings
from tests.seeds import SEEDS

NOW = datetime(2026, 3, 28, 12, 0, tzinfo=UTC)
DATEV = {"consultant_number": 29098, "client_number": 55003, "fiscal_year_start": "2026-01-01"}
SAFT = {"country": "PT", "version": "1.04_01", "company_tax_id": "PT509999999"}
BMD = {"company_number": 12, "fiscal_year_start": "2026-07-01"}


def export_schedule(payload: dict[str, Any], **more: Any):
    body = {"id": "monthly", "job_type": "export", "cron": "0 6 1 * *", "payload": payload, **more}
    return declared(schedule_from_request(body, tenant_id="acme", now=NOW,
                                          default_timezone=default_timezone(body, SEEDS)), SEEDS)


def problems(payload: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(InvalidSchedule) as caught:
        export_schedule(payload)
    return {p.field: p.message for p in caught.value.problems}


@pytest.mark.parametrize("export_type, config", [("DATEV", DATEV), ("SAF-T", SAFT), ("BMD", BMD)])
def test_each_export_type_takes_its_own_config(export_type, config):
    schedule = export_schedule({"export_type": export_type, "config": config})
    parsed = Export.model_validate(schedule.payload)
    assert parsed.export_type == export_type
    assert parsed.config is not None and parsed.config.model_dump(mode="json").items() \
        >= config.items()


@pytest.mark.parametrize("payload, field, says", [
    ({"export_type": "DATEV", "config": {**DATEV, "consultant_number": 12}},
     "payload.config.consultant_number", "greater than or equal to 1001"),
    ({"export_type": "DATEV", "config": {**DATEV, "fiscal_year_start": "2026-01-15"}},
     "payload.config.fiscal_year_start", "first of a month"),
    ({"export_type": "DATEV", "config": {**DATEV, "consultnt_number": 1}},
     "payload.config.consultnt_number", "Extra inputs are not permitted"),
    ({"export_type": "SAF-T", "config": {**SAFT, "country": "Portugal"}},
     "payload.config.country", "pattern"),
    # a config of another type is checked as the named type's, field by field
    ({"export_type": "SAF-T", "config": DATEV}, "payload.config.country", "Field required"),
    ({"export_type": "BMD", "config": {**BMD, "delimiter": "|"}},
     "payload.config.delimiter", "';' or ','"),
    ({"export_type": "DATEV"}, "payload.config", "a DATEV export needs its config"),
    ({"config": DATEV}, "payload.config", "belongs to an export_type"),
    ({"export_type": "XLSX", "config": {}}, "payload.export_type", "'DATEV', 'SAF-T' or 'BMD'"),
    ({"export_type": "BMD", "config": BMD, "notify_email": "nobody"},
     "payload.notify_email", "an email address"),
])
def test_a_bad_export_field_is_named_under_payload(payload, field, says):
    found = problems(payload)
    assert field in found, found
    assert says in found[field]


def test_an_export_runs_on_berlins_clock_unless_its_schedule_names_a_zone():
    assert export_schedule({"export_type": "BMD", "config": BMD}).timezone == "Europe/Berlin"
    assert export_schedule({"export_type": "BMD", "config": BMD},
                           timezone="Europe/Vienna").timezone == "Europe/Vienna"
    other = {"id": "s", "job_type": "bank-sync", "every_ms": 60_000}
    assert default_timezone(other, SEEDS) == "UTC"
    assert default_timezone({"job_type": "nope"}, SEEDS) == "UTC"
    with pytest.raises(CatalogError, match="schedule_timezone 'Mars/Olympus'"):
        JobType("x", handler=lambda job, ctx: None, schedule_timezone="Mars/Olympus")  # type: ignore[arg-type,return-value]


def test_an_export_an_event_requested_keeps_its_fields_and_no_accounting_type():
    parsed = Export.model_validate({"event_id": "e1", "export_id": "x", "format": "csv"})
    assert parsed.export_type is None and parsed.config is None


def test_a_runs_status_maps_every_job_state():
    assert {state: RUN_STATUS[state] for state in JobState} == {
        JobState.WAITING: "pending", JobState.ACTIVE: "processing",
        JobState.RETRY_DUE: "processing", JobState.COMPLETED: "completed",
        JobState.DEAD_LETTERED: "failed"}


RUN = FiredRun(run_id="manual-1", job_id="export-1", fire_at=NOW.isoformat(), trigger="manual",
               emitted_at=NOW.timestamp())


def test_a_run_shows_its_status_error_and_result():
    assert run_view(RUN, None)["status"] == "pending"
    view = run_view(RUN, {"state": "dead_lettered", "attempts": 1,
                          "last_error": "JobCannotSucceed: export exp-1 failed",
                          "result": {"export_id": "exp-1"}})
    assert view["status"] == "failed" and view["state"] == "dead_lettered"
    assert view["error"].endswith("export exp-1 failed") and view["result"] == {"export_id": "exp-1"}


def test_the_schedule_view_shows_its_last_run_and_next_one_in_utc():
    schedule = export_schedule({"export_type": "DATEV", "config": DATEV})
    fresh = schedule_view(schedule)
    assert (fresh["last_run_at"], fresh["last_status"], fresh["next_run_at"]) == (None, None, None)
    berlin_next = datetime(2026, 4, 1, 6, 0).astimezone()  # any aware time: shown in UTC
    view = schedule_view(schedule, last_run=RUN, last_job={"state": "active"},
                         next_at=berlin_next)
    assert view["last_run_at"] == "2026-03-28T12:00:00+00:00"
    assert view["last_status"] == "processing"
    assert view["next_run_at"] == berlin_next.astimezone(UTC).isoformat()
    assert schedule_view(schedule, last_run=RUN)["last_status"] == "pending"


class Results:
    def __init__(self) -> None:
        self.kept: dict[str, Any] = {}

    async def set_result(self, job_id: str, result: dict[str, Any]) -> None:
        self.kept.update(result)


async def test_a_handler_gives_its_job_a_result_in_parts():
    store = Results()
    job = Job(job_id="j1", tenant_id="acme", type="export", triggered_by="manual",
              scheduled_at=NOW)
    services = HandlerServices(steps=store, emit_job=None, schedules=None,  # type: ignore[arg-type]
                               cache=None, catalog=SEEDS, settings=load_settings())
    ctx = JobContext(job, payload={}, attempt=1, client=None,  # type: ignore[arg-type]
                     finished={}, services=services)
    await ctx.result(export_id="exp-1")
    await ctx.result(file_name="exp-1.datev.zip")
    assert store.kept == {"export_id": "exp-1", "file_name": "exp-1.datev.zip"}
