from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cronbus.agents.schedules.api_rules import with_enabled
from cronbus.agents.schedules.builtins import (
    BUILTINS,
    reconcile,
    switched_off,
    wanted_builtins,
)
from cronbus.agents.schedules.cron import preview
from cronbus.families.data import NEVER_AUTO_DELETED
from cronbus.streams.catalog import Catalog, PayloadError
from cronbus.streams.settings import SettingsError, load_settings
from tests.seeds import SEEDS

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)  # a Saturday


def by_id(settings=None):
    return {s.id: (s, off) for s, off in wanted_builtins(settings or load_settings(), NOW, SEEDS)}


def test_every_builtin_fires_when_the_source_designs_say():
    table = by_id()
    assert set(table) == {"builtin." + b.name for b in BUILTINS}
    first = {sid: preview(s, NOW, 2) for sid, (s, _) in table.items()}
    assert first["builtin.event-expiration"][1] - first["builtin.event-expiration"][0] == timedelta(minutes=5)
    assert first["builtin.settlement-growth"][0] == datetime(2026, 11, 21, 13, tzinfo=UTC)
    assert first["builtin.structure-maintenance"][1] == datetime(2026, 11, 21, 14, tzinfo=UTC)
    assert first["builtin.chat-retention"][0] == datetime(2026, 11, 22, 2, tzinfo=UTC)
    assert first["builtin.session-cleanup"][0] == datetime(2026, 11, 22, 3, tzinfo=UTC)
    assert first["builtin.audit-log-retention"] == [datetime(2026, 11, 22, 1, tzinfo=UTC),
                                                    datetime(2026, 11, 29, 1, tzinfo=UTC)]
    assert first["builtin.notification-cleanup"][0] == datetime(2026, 11, 22, 4, tzinfo=UTC)
    assert first["builtin.temp-file-cleanup"][0] == datetime(2026, 11, 22, 5, tzinfo=UTC)
    assert first["builtin.inactive-account-cleanup"][0] == datetime(2026, 12, 1, tzinfo=UTC)
    assert all(s.tenant_id == "system" and s.enabled and not off for s, off in table.values())


# the background-jobs source's retention table, row for row: (dataset, period, keep unread,
# notice days, when in UTC)
RETENTION_TABLE = {
    "chat-messages": ("90d", True, None, "0 2 * * *"),
    "audit-logs": ("1y", False, None, "0 1 * * 0"),
    "sessions": ("7d", False, None, "0 3 * * *"),
    "notifications": ("90d", True, None, "0 4 * * *"),
    "inactive-accounts": ("2y", False, 30, "0 0 1 * *"),
    "temp-files": ("24h", False, None, "0 5 * * *"),
}


def test_retention_is_the_source_table_exactly():
    cleanups = {s.payload["dataset"]: s for s, _ in by_id().values()
                if s.job_type == "retention-cleanup"}
    assert {dataset: (s.payload["keep_for"], s.payload.get("keep_unread", False),
                      s.payload.get("notice_days"), s.cron) for dataset, s in cleanups.items()
            } == RETENTION_TABLE
    assert all(s.timezone == "UTC" for s in cleanups.values())


def test_daily_weekly_and_monthly_tasks_run_in_eastern_time_through_dst():
    table = by_id()
    tasks = {sid.removeprefix("builtin."): s for sid, (s, _) in table.items()
             if s.job_type == "scheduled-task"}
    assert {name: s.payload["task"] for name, s in tasks.items()} == {n: n for n in tasks}
    assert len(tasks) == 12 and all(s.timezone == "America/Toronto" for s in tasks.values())
    # November: EST, UTC-5
    assert preview(tasks["daily-statistics"], NOW, 1) == [datetime(2026, 11, 22, 5, 30, tzinfo=UTC)]
    assert preview(tasks["email-digest"], NOW, 1) == [datetime(2026, 11, 22, 11, tzinfo=UTC)]
    assert preview(tasks["database-maintenance"], NOW, 1) == [datetime(2026, 11, 22, 8, tzinfo=UTC)]
    assert preview(tasks["security-audit"], NOW, 1) == [datetime(2026, 11, 22, 11, tzinfo=UTC)]
    assert preview(tasks["data-cleanup"], NOW, 1) == [datetime(2026, 12, 1, 7, tzinfo=UTC)]
    assert preview(tasks["certificate-check"], NOW, 1) == [datetime(2026, 12, 1, 15, tzinfo=UTC)]
    # July: EDT, UTC-4
    summer = datetime(2026, 7, 1, tzinfo=UTC)
    assert preview(tasks["daily-statistics"], summer, 1) == [datetime(2026, 7, 1, 4, 30, tzinfo=UTC)]
    assert preview(tasks["subscription-renewal"], summer, 1) == [datetime(2026, 7, 1, 10, tzinfo=UTC)]


def test_payment_records_and_user_accounts_are_never_cleaned_up():
    datasets = {s.payload.get("dataset") for s, _ in by_id().values()}
    assert not datasets & NEVER_AUTO_DELETED
    with pytest.raises(PayloadError, match="payments are never deleted automatically"):
        SEEDS["retention-cleanup"].check_payload({"dataset": "payments", "older_than_days": 3650})
    with pytest.raises(PayloadError, match="user-accounts are never deleted automatically"):
        SEEDS["retention-cleanup"].check_payload({"dataset": "user-accounts", "keep_for": "2y"})


@pytest.mark.parametrize("payload", [
    {"dataset": "sessions"},
    {"dataset": "sessions", "keep_for": "7d", "older_than_days": 7},
    {"dataset": "sessions", "keep_for": "7 days"},
    {"dataset": "sessions", "keep_for": "0d"},
])
def test_a_retention_period_is_given_once_and_in_units(payload):
    with pytest.raises(PayloadError) as raised:
        SEEDS["retention-cleanup"].check_payload(payload)
    assert raised.value.problems[0][0] in ("keep_for", "(payload)")


def test_a_catalog_without_a_builtins_job_type_goes_without_that_builtin():
    world_only = Catalog.load(["cronbus.families.world"])
    names = {s.id for s, _ in wanted_builtins(load_settings(), NOW, world_only)}
    assert names == {"builtin.event-expiration", "builtin.settlement-growth",
                     "builtin.structure-maintenance"}


def test_grace_period_and_system_tenant_come_from_settings():
    table = by_id(load_settings(event_expiration_grace_s=60, system_tenant="ops"))
    expiration, _ = table["builtin.event-expiration"]
    assert expiration.payload["grace_period_s"] == 60 and expiration.tenant_id == "ops"
    assert by_id()["builtin.event-expiration"][0].payload["grace_period_s"] == 300


def test_switching_off_by_env(monkeypatch):
    monkeypatch.setenv("CRONBUS_BUILTIN_SCHEDULES_OFF", "chat-retention, settlement-growth")
    assert switched_off(load_settings()) == {"chat-retention", "settlement-growth"}
    assert by_id(load_settings())["builtin.chat-retention"][1] is True
    monkeypatch.setenv("CRONBUS_BUILTIN_SCHEDULES_OFF", "all")
    assert len(switched_off(load_settings())) == len(BUILTINS)
    monkeypatch.setenv("CRONBUS_BUILTIN_SCHEDULES_OFF", "chat")
    with pytest.raises(SettingsError, match="CRONBUS_BUILTIN_SCHEDULES_OFF names no built-in schedule chat"):
        switched_off(load_settings())


def test_reconcile_is_idempotent_and_keeps_a_runtime_pause():
    desired, _ = by_id()["builtin.chat-retention"]
    assert reconcile(desired, None, forced_off=False) == desired
    assert reconcile(desired, None, forced_off=True).enabled is False
    restarted = desired.model_copy(update={"revision_at": NOW + timedelta(days=1)})
    assert reconcile(restarted, desired, forced_off=False) is None  # same definition: no change
    paused = with_enabled(desired, False, NOW + timedelta(hours=1))
    assert reconcile(restarted, paused, forced_off=False) is None  # the pause survives a restart
    forced = reconcile(restarted, desired, forced_off=True)
    assert forced is not None and forced.enabled is False


def test_reconcile_takes_a_new_definition_and_keeps_the_revision_unless_timing_changed():
    desired, _ = by_id()["builtin.event-expiration"]
    later = NOW + timedelta(days=1)
    new_grace, _ = by_id(load_settings(event_expiration_grace_s=60))["builtin.event-expiration"]
    new_grace = new_grace.model_copy(update={"revision_at": later})
    updated = reconcile(new_grace, desired, forced_off=False)
    assert updated is not None and updated.payload["grace_period_s"] == 60
    assert updated.revision_at == desired.revision_at
    moved = desired.model_copy(update={"every_ms": 60_000, "revision_at": later})
    assert reconcile(moved, desired, forced_off=False).revision_at == later
