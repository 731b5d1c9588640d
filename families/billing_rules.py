"""The billing family's pure rules: which reminder an overdue invoice gets next, which SARS
deadline alert is due, whether a payment webhook's signature holds, which month a run bills and
which schedules a tenant's settings make. No I/O: unit tested in microseconds."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# --- payment reminders: the ladder and the days overdue each step waits for
REMINDER_LADDER: tuple[str, ...] = ("gentle", "second", "final", "escalation")
REMINDER_AFTER_DAYS: Mapping[str, int] = {"gentle": 1, "second": 7, "final": 14, "escalation": 30}


@dataclass(frozen=True, slots=True)
class SentReminder:
    step: str
    sent_on: date  # the tenant's local date it was sent


def next_reminder(days_overdue: int, sent: Sequence[SentReminder], today: date) -> str | None:
    """The ladder's next step for an invoice ``days_overdue`` days past due, or None.

    Steps go in order, each once: the next is the first not sent yet, due once the invoice is
    at least its days overdue (gentle 1, second 7, final 14, escalation 30) and no reminder
    went out today (a rerun the same day sends nothing more). An invoice found late climbs one
    step a day until it reaches the step its age calls for."""
    done = {r.step for r in sent}
    if any(r.sent_on >= today for r in sent):
        return None
    for step in REMINDER_LADDER:
        if step in done:
            continue
        return step if days_overdue >= REMINDER_AFTER_DAYS[step] else None
    return None  # escalated: the ladder ends


# --- SARS deadlines
SUBMISSION_TYPES: tuple[str, ...] = ("VAT201", "EMP201", "IRP5")
DEFAULT_ALERT_DAYS: tuple[int, ...] = (7, 3, 1)


def deadline_alert(days_until: int, chosen: Iterable[int], sent: Iterable[int]) -> int | None:
    """Which alert (its days-before, one of ``chosen``) a deadline ``days_until`` days away is
    due, or None. It is the smallest chosen N with ``days_until <= N``: on a daily check, the
    alert for N goes out exactly N days before. One missed (a check that did not run, a
    deadline entered late) is sent at the next check, unless a nearer alert went out already;
    each (deadline, N) once. A deadline past is alerted no more."""
    if days_until < 0:
        return None
    stages = sorted(n for n in set(chosen) if n >= days_until)
    if not stages:
        return None
    stage = stages[0]
    done = set(sent)
    if stage in done or any(n < stage for n in done):
        return None
    return stage


# --- payment webhooks: Stripe-style signatures
SIGNATURE_TOLERANCE_S = 300


class BadSignatureReason(ValueError):
    """Why a webhook's signature does not verify (never shows the secret or a digest)."""


def sign(body: str, secret: str, timestamp: int) -> str:
    """The signature header a provider sends: ``t=<unix>,v1=<hex HMAC-SHA256 of "t.body">``."""
    digest = hmac.new(secret.encode(), f"{timestamp}.{body}".encode(), hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def verify_signature(header: str | None, body: str, secrets: Sequence[str], *,
                     received_at: float, tolerance_s: float = SIGNATURE_TOLERANCE_S) -> int:
    """Check a ``t=<unix>,v1=<hex>[,v1=<hex>...]`` header over ``"{t}.{body}"`` with HMAC-SHA256
    against each of ``secrets`` (a provider rotating its secret has two), in constant time.
    The timestamp must be within ``tolerance_s`` of ``received_at`` (when the endpoint got the
    webhook, so a job retried or replayed later still verifies). Returns the timestamp, or
    raises :class:`BadSignatureReason` naming what is wrong."""
    if not header or not header.strip():
        raise BadSignatureReason("no signature header")
    timestamps, signatures = [], []
    for part in header.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep:
            raise BadSignatureReason(f"malformed signature header: {part.strip()[:40]!r} is "
                                     f"not name=value")
        if name == "t":
            timestamps.append(value)
        elif name == "v1":
            signatures.append(value)
    if len(timestamps) != 1 or not timestamps[0].isdigit():
        raise BadSignatureReason("the signature header has no single t=<unix seconds>")
    if not signatures:
        raise BadSignatureReason("the signature header has no v1 signature")
    timestamp = int(timestamps[0])
    if abs(received_at - timestamp) > tolerance_s:
        raise BadSignatureReason(f"timestamp {timestamp} is {abs(received_at - timestamp):.0f} s "
                                 f"from receipt, more than the {tolerance_s:g} s tolerated")
    if not secrets:
        raise BadSignatureReason("no secret to verify with")
    signed = f"{timestamp}.{body}".encode()
    expected = [hmac.new(s.encode(), signed, hashlib.sha256).hexdigest() for s in secrets]
    # every pair compared, in constant time: how far a guess matched is never timed
    matched = False
    for candidate in signatures:
        for digest in expected:
            matched |= hmac.compare_digest(candidate.encode(), digest.encode())
    if not matched:
        raise BadSignatureReason("no v1 signature matches the body")
    return timestamp


# --- time in the tenant's zone
def zone(name: str) -> ZoneInfo:
    """An IANA time zone, or ValueError naming it."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"time zone {name!r} is no IANA zone (e.g. Africa/Johannesburg)") from None


def local_date(at: datetime, zone_name: str) -> date:
    """The tenant's calendar date at ``at``."""
    return at.astimezone(zone(zone_name)).date()


def billing_month(at: datetime, zone_name: str) -> str:
    """The month a run at ``at`` bills, YYYY-MM: the month it runs in, in the tenant's zone
    (fees invoiced on the tenant's invoice day for that month)."""
    return local_date(at, zone_name).strftime("%Y-%m")


# --- a tenant's schedules, from its settings
INVOICE_DAY_MAX = 28  # every month has it


def tenant_schedules(tenant: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The four schedules a tenant's settings make, as the schedules API takes them, in the
    tenant's time zone: the month's invoices on its invoice day, payment reminders and the
    SARS deadline check daily at their hours, a bank sync every few hours. ValueError names a
    setting that cannot be scheduled."""
    tenant_id = tenant["id"]
    tz = tenant.get("timeZone") or "UTC"
    zone(tz)

    def whole(name: str, low: int, high: int) -> int:
        value = tenant.get(name)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"tenant {tenant_id}: {name} is {value!r}, not a whole number "
                             f"{low}..{high}")
        return value

    invoice_day = whole("invoiceDay", 1, INVOICE_DAY_MAX)
    invoice_hour = whole("invoiceHour", 0, 23)
    reminder_hour = whole("reminderHour", 0, 23)
    alert_hour = whole("sarsAlertHour", 0, 23)
    sync_hours = whole("bankSyncHours", 1, 24)
    # local hours 0, N, 2N, ... when N divides the day; otherwise every N hours of elapsed time
    sync = ({"cron": f"0 */{sync_hours} * * *", "timezone": tz} if 24 % sync_hours == 0
            else {"every_ms": sync_hours * 3_600_000})
    common = {"misfire": "run_once", "overlap": "skip", "payload": {}}
    return [
        {"id": "billing.invoice-generation", "job_type": "invoice-generation",
         "cron": f"0 {invoice_hour} {invoice_day} * *", "timezone": tz, **common},
        {"id": "billing.payment-reminder", "job_type": "payment-reminder",
         "cron": f"0 {reminder_hour} * * *", "timezone": tz, **common},
        {"id": "billing.sars-deadline", "job_type": "sars-deadline",
         "cron": f"0 {alert_hour} * * *", "timezone": tz, **common},
        {"id": "billing.bank-sync", "job_type": "bank-sync", **sync, **common},
    ]
