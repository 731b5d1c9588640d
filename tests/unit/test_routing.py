from __future__ import annotations

from datetime import UTC, datetime

import pytest

from cronbus.agents.ingest.debounce import IMMEDIATE, parse_policies, parse_policy
from cronbus.agents.ingest.service import immediate_job, policies_from
from cronbus.streams import topics
from cronbus.streams.events import CronTick, EntityModified, ExportRequested, InvoiceDue, WorldTimeAdvanced
from cronbus.streams.settings import SettingsError, load_settings
from tests.seeds import SEEDS

job_types_for = SEEDS.route

NOW = datetime(2026, 11, 23, 10, tzinfo=UTC)
BASE = {"event_id": "e1", "tenant_id": "c42", "occurred_at": NOW}


def test_world_time_fans_out_to_expiry_effects_and_recalculation():
    event = WorldTimeAdvanced(**BASE, world_time=NOW)
    assert job_types_for(topics.WORLD_TIME_ADVANCED, event) == [
        "event-expiration", "deferred-effect",
        "settlement-growth", "structure-maintenance",
    ]


@pytest.mark.parametrize("entity_type, expected", [
    ("settlement", ["settlement-growth"]),
    ("structure", ["structure-maintenance"]),
    ("character", []),
])
def test_entity_changes_route_by_entity_type(entity_type, expected):
    event = EntityModified(**BASE, entity_type=entity_type, entity_id="x")
    assert job_types_for(topics.ENTITY_MODIFIED, event) == expected


@pytest.mark.parametrize("stage, expected", [
    ("generate", "invoice-generation"), ("remind", "payment-reminder"),
])
def test_invoices_route_by_stage(stage, expected):
    event = InvoiceDue(**BASE, invoice_id="i", due_date=NOW.date(), amount=1, stage=stage)
    assert job_types_for(topics.INVOICE_DUE, event) == [expected]


def test_exports_and_ticks():
    export = ExportRequested(**BASE, export_id="x1")
    assert job_types_for(topics.EXPORT_REQUESTED, export) == ["export"]
    tick = CronTick(**BASE, schedule_id="s1", job_type="bank-sync", fire_at=NOW)
    assert job_types_for(topics.CRON_TICKS, tick) == ["bank-sync"]


def test_a_tick_job_is_named_by_schedule_and_fire_time():
    tick = CronTick(**BASE, schedule_id="s1", job_type="bank-sync", fire_at=NOW, payload={"a": 1})
    again = CronTick(**{**BASE, "event_id": "e2"}, schedule_id="s1", job_type="bank-sync", fire_at=NOW)
    job = immediate_job(tick, "bank-sync", now=0)
    assert job.job_id == immediate_job(again, "bank-sync", now=5).job_id
    assert job.triggered_by == "cron" and job.scheduled_at == NOW
    assert job.payload == {"schedule_id": "s1", "a": 1}


def test_an_immediate_event_job_carries_the_event_fields():
    job = immediate_job(ExportRequested(**BASE, export_id="x1", format="json"), "export", 0)
    assert job.payload["export_id"] == "x1" and job.payload["format"] == "json"
    assert job.payload["event_id"] == "e1"


def test_each_declared_job_type_has_its_declared_policy():
    policies = policies_from(load_settings(debounce_window_s=3), SEEDS)
    assert policies["event-expiration"].mode == "leading"
    assert policies["event-expiration"].window_s == 5
    assert policies["invoice-generation"].window_s == 3
    assert policies["settlement-growth"].max_wait_s == 60
    assert policies["export"] is IMMEDIATE
    assert set(policies) == set(SEEDS.names)


def test_the_settings_override_a_declared_policy_and_name_an_undeclared_type():
    settings = load_settings(debounce_policies="export=leading:30")
    assert policies_from(settings, SEEDS)["export"].window_s == 30
    with pytest.raises(SettingsError, match="laundry: no such job type"):
        policies_from(load_settings(debounce_policies="laundry=immediate"), SEEDS)


@pytest.mark.parametrize("text, message", [
    ("export", "not job-type=policy"),
    ("export=sometimes", "leading, trailing or immediate"),
    ("export=leading:x", "seconds"),
    ("export=leading:1:2", "too many"),
    ("export=trailing:5:2", "max_wait_s"),
])
def test_bad_policies_name_the_problem(text, message):
    with pytest.raises(ValueError, match=message):
        parse_policies(text, default_window_s=1)


def test_trailing_without_numbers_takes_the_default_window():
    assert parse_policy("trailing", default_window_s=7).window_s == 7
