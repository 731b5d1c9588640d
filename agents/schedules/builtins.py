"""The built-in schedules: one table, read top to bottom. Pure: no Faust, no I/O.

Each is on by default. ``CRONBUS_BUILTIN_SCHEDULES_OFF`` (names from the table, or ``all``)
keeps some paused from start-up; at runtime any of them is paused and resumed like any other
schedule (``cronbus schedules pause builtin.chat-retention``) with a token of the system tenant.

They belong to the system tenant (``CRONBUS_SYSTEM_TENANT``, default ``system``): each fires one
job for the whole installation, and the downstream API does the work for every tenant.
Their ids are ``builtin.<name>``.

Payment records and user accounts are never deleted automatically: there is no retention
schedule for them, by design (financial records have their own legal retention, seven years;
an account goes when its user asks), and none may be added here (the payload model refuses).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any

from cronbus.streams.catalog import Catalog
from cronbus.streams.schedules import Schedule, parse_schedule
from cronbus.streams.settings import Settings, SettingsError

ID_PREFIX = "builtin."


@dataclass(frozen=True, slots=True)
class Builtin:
    name: str
    job_type: str  # declared by the default catalog, cronbus.families
    cron: str | None = None
    every_ms: int | None = None
    payload: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    about: str = ""
    timezone: str = "UTC"


FIVE_MINUTES_MS = 5 * 60 * 1000
# the source's scheduled tasks run in Eastern time (its "EST"): Toronto's zone, EST and EDT
EASTERN = "America/Toronto"


def _retention(dataset: str, keep_for: str, *, keep_unread: bool = False,
               notice_days: int | None = None) -> Mapping[str, Any]:
    # retention-cleanup's payload model refuses financial records (cronbus.families.data)
    return MappingProxyType({"dataset": dataset, "keep_for": keep_for,
                             **({"keep_unread": True} if keep_unread else {}),
                             **({"notice_days": notice_days} if notice_days else {})})


def _task(name: str, cron: str, about: str) -> Builtin:
    return Builtin(name, "scheduled-task", cron=cron, payload=MappingProxyType({"task": name}),
                   about=about, timezone=EASTERN)


# name, job type, when (cron in the row's zone, UTC unless said, or every_ms), payload.
# The retention rows are the background-jobs source's retention table, period for period.
BUILTINS: tuple[Builtin, ...] = (
    Builtin("event-expiration", "event-expiration", every_ms=FIVE_MINUTES_MS,
            about="expire events past their end plus the grace period (grace_period_s)"),
    Builtin("billing-schedules", "billing-schedules", cron="0 * * * *",
            about="every billing tenant's schedules kept in step with its zone and times, hourly"),
    Builtin("settlement-growth", "settlement-growth", cron="0 * * * *",
            about="every campaign's settlement growth schedules kept in step, hourly"),
    Builtin("structure-maintenance", "structure-maintenance", cron="0 * * * *",
            about="every campaign's structure schedules kept in step, hourly"),
    # retention (UTC)
    Builtin("chat-retention", "retention-cleanup", cron="0 2 * * *",
            payload=_retention("chat-messages", "90d", keep_unread=True),
            about="read chat messages older than 90 days (unread kept), daily 02:00 UTC"),
    Builtin("audit-log-retention", "retention-cleanup", cron="0 1 * * 0",
            payload=_retention("audit-logs", "1y"),
            about="audit logs older than 1 year, Sundays 01:00 UTC"),
    Builtin("session-cleanup", "retention-cleanup", cron="0 3 * * *",
            payload=_retention("sessions", "7d"),
            about="sessions older than 7 days, daily 03:00 UTC"),
    Builtin("notification-cleanup", "retention-cleanup", cron="0 4 * * *",
            payload=_retention("notifications", "90d", keep_unread=True),
            about="read notifications older than 90 days (unread kept), daily 04:00 UTC"),
    Builtin("inactive-account-cleanup", "retention-cleanup", cron="0 0 1 * *",
            payload=_retention("inactive-accounts", "2y", notice_days=30),
            about="accounts inactive 2 years, told 30 days before, monthly on the 1st 00:00 UTC"),
    Builtin("temp-file-cleanup", "retention-cleanup", cron="0 5 * * *",
            payload=_retention("temp-files", "24h"),
            about="temporary files older than 24 hours, daily 05:00 UTC"),
    # payment records and user accounts: none, ever (see the module's docstring)
    # daily tasks (Eastern)
    _task("daily-statistics", "30 0 * * *", "daily statistics, 00:30 Eastern"),
    _task("backup-verification", "0 1 * * *", "backup verification, daily 01:00 Eastern"),
    _task("log-cleanup", "0 2 * * *", "log cleanup, daily 02:00 Eastern"),
    _task("email-digest", "0 6 * * *", "email digest preparation, daily 06:00 Eastern"),
    # weekly tasks, Sundays (Eastern)
    _task("database-maintenance", "0 3 * * 0", "database maintenance, Sundays 03:00 Eastern"),
    _task("inactive-account-review", "0 4 * * 0",
          "inactive account review, Sundays 04:00 Eastern"),
    _task("performance-report", "0 5 * * 0", "performance report, Sundays 05:00 Eastern"),
    _task("security-audit", "0 6 * * 0", "security audit, Sundays 06:00 Eastern"),
    # monthly tasks, on the 1st (Eastern)
    _task("data-cleanup", "0 2 1 * *", "comprehensive data cleanup, the 1st 02:00 Eastern"),
    _task("subscription-renewal", "0 6 1 * *", "subscription renewals, the 1st 06:00 Eastern"),
    _task("analytics-report", "0 8 1 * *", "analytics report, the 1st 08:00 Eastern"),
    _task("certificate-check", "0 10 1 * *", "security certificate check, the 1st 10:00 Eastern"),
)
NAMES = tuple(b.name for b in BUILTINS)


def switched_off(settings: Settings) -> frozenset[str]:
    """The built-ins CRONBUS_BUILTIN_SCHEDULES_OFF keeps paused; an unknown name stops start-up."""
    names = set(settings.builtin_schedules_off)
    if "all" in names:
        return frozenset(NAMES)
    unknown = names - set(NAMES)
    if unknown:
        raise SettingsError(
            f"{Settings.env_name('builtin_schedules_off')} names no built-in schedule "
            f"{', '.join(sorted(unknown))}: expected names from {', '.join(NAMES)}, or all"
        )
    return frozenset(names)


def builtin_schedule(builtin: Builtin, settings: Settings, now: datetime) -> Schedule:
    payload = dict(builtin.payload)
    if builtin.job_type == "event-expiration":
        payload["grace_period_s"] = settings.event_expiration_grace_s
    return parse_schedule({
        "id": ID_PREFIX + builtin.name,
        "tenant_id": settings.system_tenant,
        "name": builtin.about or builtin.name,
        "job_type": builtin.job_type,
        "payload": {"builtin": builtin.name, **payload},
        **({"cron": builtin.cron} if builtin.cron else {"every_ms": builtin.every_ms}),
        "timezone": builtin.timezone,
        "misfire": "run_once",  # after downtime: one catch-up run, not a burst
        "overlap": "skip",  # never two of the same cleanup at once
        "revision_at": now.isoformat(),
    })


def reconcile(desired: Schedule, stored: Schedule | None, *, forced_off: bool) -> Schedule | None:
    """What to upsert at start for one built-in, or None when the stored one already says it.

    A built-in never stored starts enabled unless switched off by the environment. A stored one
    keeps its runtime pause or resume, takes any new definition (payload, timing) from the
    table, and is paused when the environment switches it off; its revision time is kept unless
    its timing changes, so a restart neither moves nor repeats a fire time."""
    if stored is None:
        return desired.model_copy(update={"enabled": False}) if forced_off else desired
    enabled = False if forced_off else stored.enabled
    wanted = desired.model_copy(update={"enabled": enabled})
    if wanted.same_definition(stored):
        return None
    if wanted.same_timing(stored):
        wanted = wanted.model_copy(update={"revision_at": stored.revision_at})
    return wanted


def wanted_builtins(settings: Settings, now: datetime,
                    catalog: Catalog) -> list[tuple[Schedule, bool]]:
    """Every built-in whose job type the catalog declares, as a schedule, with whether the
    environment switches it off. Its payload must fit (a fault in this table stops start-up)."""
    off = switched_off(settings)
    wanted = []
    for builtin in BUILTINS:
        if builtin.job_type not in catalog:
            continue  # a deployment without cronbus's own families
        schedule = builtin_schedule(builtin, settings, now)
        catalog[schedule.job_type].check_payload(schedule.payload)
        wanted.append((schedule, builtin.name in off))
    return wanted
