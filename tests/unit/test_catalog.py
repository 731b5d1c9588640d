"""The job-type registry: declarations checked as a whole, each fault named; payloads checked
against a job type's model with every wrong field named."""

from __future__ import annotations

import sys
import types
from typing import Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field

from cronbus.streams import topics
from cronbus.streams.catalog import (
    Catalog,
    CatalogError,
    EventType,
    JobType,
    PayloadError,
    RestCall,
    UnknownJobType,
    always,
    by_field,
    load_catalog,
)
from cronbus.streams.events import DomainEvent, ExportRequested
from cronbus.streams.settings import SettingsError, load_settings
from tests.seeds import SEEDS

PING = RestCall("POST", lambda job: "/ping")


class Ping(BaseModel):
    path: str = Field(pattern=r"^/")
    times: int = Field(default=1, ge=1)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PingRequested(DomainEvent):
    type: Literal["ping-requested"] = "ping-requested"
    path: str


def module(name: str, **attributes: object) -> str:
    """A job-type module importable as ``name`` for this test."""
    planted = types.ModuleType(name)
    vars(planted).update(attributes)
    sys.modules[name] = planted
    return name


def test_a_user_module_adds_its_job_and_event_types_to_the_seeds():
    name = module("myapp_jobs", JOB_TYPES=[JobType("ping", PING, payload=Ping)],
                  EVENT_TYPES=[EventType("ping-requested", PingRequested, always("ping"))])
    catalog = Catalog.load(["cronbus.families", name])
    assert "ping" in catalog and set(SEEDS.names) < set(catalog.names)
    assert "jobs.ping" in catalog.topics("app") and "jobs.ping.dead-letter" in catalog.topics("app")
    assert catalog.event_topics[-1] == topics.CRON_TICKS and "ping-requested" in catalog.models
    event = PingRequested(event_id="e", tenant_id="t", occurred_at="2026-01-01T00:00:00Z", path="/")
    assert catalog.route("ping-requested", event) == ["ping"]


@pytest.mark.parametrize("declare, message", [
    (lambda: JobType("Ping Now", PING), "'Ping Now' is not a topic suffix"),
    (lambda: JobType("ping"), "declare a call or a handler"),
    (lambda: JobType("ping", PING, handler=lambda job, ctx: None), "declare a call or a handler"),  # type: ignore[arg-type, return-value]
    (lambda: JobType("ping", PING, service="The API"), "service 'The API' is no service name"),
    (lambda: JobType("ping", PING, retries=-1), "retries must be >= 0"),
    (lambda: Catalog.of([JobType("ping", PING), JobType("ping", PING)]), "ping is declared twice"),
    (lambda: Catalog.of([JobType("ping", PING)], [EventType("x", ExportRequested, always("ping"))]),
     "event model ExportRequested must say its topic"),
    (lambda: Catalog.of([], [EventType("ping-requested", PingRequested, always("pong"))]),
     "start pong, which no module declares"),
    (lambda: Catalog.of([], [EventType(topics.CRON_TICKS, PingRequested, always())]),
     "is declared twice"),
    (lambda: Catalog.of(["ping"]), "'ping' is not a cronbus JobType declaration"),  # type: ignore[list-item]
    (lambda: Catalog.load(["myapp_missing_module"]),
     "module myapp_missing_module fails to import: ModuleNotFoundError"),
    (lambda: Catalog.load([module("myapp_empty")]), "module myapp_empty declares no JOB_TYPES"),
    (lambda: Catalog.load([module("myapp_one", JOB_TYPES=JobType("ping", PING))]),
     "JOB_TYPES and EVENT_TYPES are sequences of declarations"),
    (lambda: Catalog.of([JobType("ping", PING)], ["ping-requested"]),  # type: ignore[list-item]
     "'ping-requested' is not a cronbus EventType declaration"),
    (lambda: JobType("ping", PING, debounce="trailing:soon"), "debounce 'trailing:soon' is none of"),
    (lambda: JobType("ping", PING, payload=Strict), "payload model Strict forbids extra keys"),
    (lambda: Catalog.of([JobType("ping", PING)], [
        EventType("ping-requested", PingRequested, by_field("colour", {"red": "ping"}))]),
     "the route of ping-requested reads colour, which PingRequested has not"),
    (lambda: Catalog.of([JobType("ping", PING, payload=Ping, debounce="trailing")], [
        EventType("ping-requested", PingRequested, always("ping"))]),
     "start ping jobs whose payload lacks path, which Ping requires"),
])
def test_each_fault_in_a_declaration_is_named(declare, message):
    with pytest.raises(CatalogError, match=message):
        declare()


def test_a_module_that_raises_on_import_is_named_with_its_error(tmp_path, monkeypatch):
    (tmp_path / "myapp_broken.py").write_text("raise RuntimeError('no database here')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(SettingsError, match="CRONBUS_JOB_MODULES: job-type module myapp_broken "
                                            "fails to import: RuntimeError: no database here"):
        load_catalog(load_settings(job_modules="myapp_broken"))


def test_an_unknown_job_type_is_named_with_the_known_ones():
    with pytest.raises(UnknownJobType, match="unknown job type 'laundry'; known: bank-sync, "):
        SEEDS["laundry"]
    assert [t.name for t in SEEDS.pick([])] == SEEDS.names
    assert [t.name for t in SEEDS.pick(["export"])] == ["export"]


def test_a_payload_gets_its_model_and_every_wrong_field_is_named():
    ping = JobType("ping", PING, payload=Ping)
    assert ping.check_payload({"path": "/a", "schedule_id": "s"}) == Ping(path="/a")
    with pytest.raises(PayloadError) as caught:
        ping.check_payload({"path": "a", "times": 0})
    assert [name for name, _ in caught.value.problems] == ["path", "times"]
    assert str(caught.value).startswith("the payload does not fit ping: path: String should match")
    untyped = JobType("pong", PING)
    assert untyped.check_payload({"anything": 1}) == {"anything": 1}


@pytest.mark.parametrize("job_type, payload, field", [
    ("invoice-generation", {"billing_month": "2026-13"}, "billing_month"),
    ("payment-reminder", {"reminder_type": "rude"}, "reminder_type"),
    ("sars-deadline", {"submission_type": "VAT999", "days_until_deadline": 3}, "submission_type"),
    ("sars-deadline", {"submission_type": "VAT201", "days_until_deadline": -1},
     "days_until_deadline"),
    ("retention-cleanup", {"dataset": "payments", "older_than_days": 30}, "dataset"),
    ("deferred-effect", {"effect_id": ""}, "effect_id"),
])
def test_the_seed_payloads_name_what_does_not_fit(job_type, payload, field):
    with pytest.raises(PayloadError) as caught:
        SEEDS[job_type].check_payload(payload)
    assert [name for name, _ in caught.value.problems] == [field]


def test_the_seed_payloads_that_fit():
    assert SEEDS["invoice-generation"].check_payload({"billing_month": "2026-11"}).dry_run is False
    reminder = SEEDS["payment-reminder"].check_payload(
        {"reminder_type": "final", "invoice_ids": ["INV-1"]})
    assert reminder.reminder_type == "final" and reminder.invoice_ids == ["INV-1"]
    sars = SEEDS["sars-deadline"].check_payload({"submission_type": "EMP201",
                                                 "days_until_deadline": 7})
    assert sars.days_until_deadline == 7


def test_a_route_by_field_starts_what_the_field_names():
    route = by_field("format", {"csv": "export"})
    assert route.targets == ("export",)
    event = ExportRequested(event_id="e", tenant_id="t", occurred_at="2026-01-01T00:00:00Z",
                            export_id="x", format="csv")
    assert route.pick(event) == ("export",)
    assert route.pick(event.model_copy(update={"format": "pdf"})) == ()


@pytest.mark.parametrize("value, message", [
    ("", "no module named"),
    ("myapp.jobs, 9lives", "9lives: not module names"),
])
def test_the_module_setting_names_a_bad_value(value, message):
    with pytest.raises(SettingsError, match=message):
        load_settings(job_modules=value)


def test_a_bad_cron_tick_line_of_a_file_is_named_with_its_line():
    from cronbus.agents.cli.main import _events_from_lines

    lines = ['{"schedule_id": "s", "job_type": "export", "fire_at": "2026-12-01T00:00:00Z"}',
             '{"schedule_id": "s", "job_type": "sars-deadline", "fire_at": "2026-12-01T00:00:00Z",'
             ' "payload": {"submission_type": "VAT999", "days_until_deadline": 3}}']
    with pytest.raises(ValueError, match=r"line 2: payload\.submission_type: Input should be"):
        _events_from_lines(SEEDS, "cron-ticks", "acme", iter(lines))
