"""The billing family's pure rules: the reminder ladder, SARS alert choice, webhook signatures,
the billing month and a tenant's schedules."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from cronbus.families.billing import PaymentWebhookReceived, payment_of
from cronbus.families.billing_rules import (
    BadSignatureReason,
    SentReminder,
    billing_month,
    deadline_alert,
    next_reminder,
    sign,
    tenant_schedules,
    verify_signature,
)
from cronbus.streams.schedules import parse_schedule
from cronbus.streams.settings import load_settings
from tests.seeds import SEEDS

TODAY = date(2026, 12, 1)
SECRET = "whsec_test"
BODY = '{"id": "evt_1", "type": "payment_intent.succeeded"}\n'
T = 1_764_547_200


def sent(*steps_on: tuple[str, date]) -> list[SentReminder]:
    return [SentReminder(step, on) for step, on in steps_on]


@pytest.mark.parametrize("days_overdue, before, expected", [
    (0, [], None),  # due today: not overdue
    (1, [], "gentle"),
    (6, [("gentle", date(2026, 11, 26))], None),  # second waits for 7 days
    (7, [("gentle", date(2026, 11, 26))], "second"),
    (14, [("gentle", date(2026, 11, 20)), ("second", date(2026, 11, 27))], "final"),
    (29, sent(("gentle", date(2026, 11, 1)), ("second", date(2026, 11, 8)),
              ("final", date(2026, 11, 15))), None),
    (30, [("gentle", date(2026, 11, 1)), ("second", date(2026, 11, 8)),
          ("final", date(2026, 11, 15))], "escalation"),
    (90, [(s, date(2026, 10, 1)) for s in ("gentle", "second", "final", "escalation")], None),
    # found late: one step a day, from the first
    (40, [], "gentle"),
    (41, [("gentle", date(2026, 11, 30))], "second"),
])
def test_the_ladder_climbs_one_step_at_a_time_each_once(days_overdue, before, expected):
    history = [r if isinstance(r, SentReminder) else SentReminder(*r) for r in before]
    assert next_reminder(days_overdue, history, TODAY) == expected


def test_nothing_more_is_sent_the_day_a_reminder_went_out():
    assert next_reminder(40, sent(("gentle", TODAY)), TODAY) is None
    assert next_reminder(40, sent(("gentle", TODAY)), date(2026, 12, 2)) == "second"


@pytest.mark.parametrize("days_until, already, expected", [
    (8, [], None),
    (7, [], 7),
    (5, [], 7),  # missed (entered late): sent at the next check
    (5, [7], None),
    (3, [7], 3),
    (2, [], 3),  # the 7-day alert was missed: the nearer one supersedes it
    (2, [3], None),
    (1, [7, 3], 1),
    (0, [7, 3], 1),  # due today, its 1-day alert missed
    (0, [7, 3, 1], None),
    (-1, [], None),  # past
    (4, [3], None),  # a nearer alert went out (a deadline moved later): never an earlier one
])
def test_a_deadline_gets_each_chosen_alert_once(days_until, already, expected):
    assert deadline_alert(days_until, [7, 3, 1], already) == expected


def test_a_tenants_own_days_are_used():
    assert deadline_alert(14, [14, 2], []) == 14
    assert deadline_alert(3, [14, 2], [14]) is None
    assert deadline_alert(2, [14, 2], [14]) == 2
    assert deadline_alert(2, [], []) is None


def test_a_good_signature_verifies_and_returns_its_time():
    header = sign(BODY, SECRET, T)
    assert header.startswith(f"t={T},v1=")
    assert verify_signature(header, BODY, [SECRET], received_at=T + 10) == T
    # a rotated secret: either of two verifies; several v1 values are allowed
    assert verify_signature(header, BODY, ["whsec_new", SECRET], received_at=T) == T
    other = sign(BODY, "whsec_new", T).split(",")[1]
    assert verify_signature(f"{header},{other}", BODY, ["whsec_new"], received_at=T) == T


@pytest.mark.parametrize("header, body, received_at, message", [
    (None, BODY, T, "no signature header"),
    ("  ", BODY, T, "no signature header"),
    ("garbage", BODY, T, "not name=value"),
    (f"v1={'0' * 64}", BODY, T, "no single t="),
    (f"t={T}", BODY, T, "no v1 signature"),
    (f"t=abc,v1={'0' * 64}", BODY, T, "no single t="),
    (sign(BODY, SECRET, T), BODY + " ", T, "no v1 signature matches"),  # a changed body
    (sign(BODY, "whsec_other", T), BODY, T, "no v1 signature matches"),
    (sign(BODY, SECRET, T), BODY, T + 301, "more than the 300 s tolerated"),
    (sign(BODY, SECRET, T), BODY, T - 301, "more than the 300 s tolerated"),
])
def test_a_bad_signature_is_named(header, body, received_at, message):
    with pytest.raises(BadSignatureReason, match=message) as caught:
        verify_signature(header, body, [SECRET], received_at=received_at)
    assert SECRET not in str(caught.value)


def test_no_secret_verifies_nothing():
    with pytest.raises(BadSignatureReason, match="no secret"):
        verify_signature(sign(BODY, SECRET, T), BODY, [], received_at=T)


def test_a_payment_is_read_from_a_verified_body():
    body = ('{"id": "evt_9", "type": "payment_intent.succeeded", "data": {"object": '
            '{"amount_received": 12550, "currency": "zar", "metadata": {"invoice_id": "INV-1"}}}}')
    assert payment_of(body, "evt_9") == {"invoiceId": "INV-1", "amount": 125.5,
                                         "currency": "ZAR"}
    assert payment_of('{"id": "evt_9", "type": "charge.refunded"}', "evt_9") is None
    with pytest.raises(ValueError, match="not the provider event id"):
        payment_of(body, "evt_other")
    with pytest.raises(ValueError, match="not JSON"):
        payment_of("{", "evt_9")
    with pytest.raises(ValueError, match="invoice_id is missing"):
        payment_of('{"id": "e", "type": "charge.succeeded", "data": {"object": {"amount": 1}}}',
                   "e")


def test_a_webhook_events_id_is_the_providers():
    fields = {"tenant_id": "acme", "occurred_at": "2026-12-01T00:00:00Z", "provider": "stripe",
              "provider_event_id": "evt_1", "body": BODY, "received_at": "2026-12-01T00:00:00Z"}
    event = PaymentWebhookReceived.model_validate(fields)
    assert event.event_id == "stripe:evt_1" and event.body == BODY  # the body is not stripped
    # a producer's own id (the CLI fills in a random one) gives way to the provider's
    assert PaymentWebhookReceived.model_validate(
        {**fields, "event_id": "random-uuid"}).event_id == "stripe:evt_1"


def test_webhook_secrets_come_from_json_or_one_variable_per_provider(monkeypatch):
    monkeypatch.setenv("CRONBUS_PAYMENT_WEBHOOK_SECRETS", '{"stripe": "whsec_a whsec_b"}')
    assert load_settings().payment_webhook_secrets["stripe"].get_secret_value().split() == [
        "whsec_a", "whsec_b"]
    monkeypatch.delenv("CRONBUS_PAYMENT_WEBHOOK_SECRETS")
    monkeypatch.setenv("CRONBUS_PAYMENT_WEBHOOK_SECRETS__PAYFAST", "pf_secret")
    secrets = load_settings().payment_webhook_secrets
    assert {name: s.get_secret_value() for name, s in secrets.items()} == {"payfast": "pf_secret"}
    assert "pf_secret" not in repr(secrets)


def test_the_billing_month_is_the_month_it_runs_in_the_tenants_zone():
    # 22:30 UTC on 30 November is already 1 December in Johannesburg (UTC+2)
    late = datetime(2026, 11, 30, 22, 30, tzinfo=UTC)
    assert billing_month(late, "Africa/Johannesburg") == "2026-12"
    assert billing_month(late, "America/New_York") == "2026-11"
    with pytest.raises(ValueError, match="no IANA zone"):
        billing_month(late, "Mars/Base")


TENANT = {"id": "acme", "timeZone": "Africa/Johannesburg", "invoiceDay": 25, "invoiceHour": 6,
          "reminderHour": 9, "sarsAlertHour": 8, "bankSyncHours": 4}


def test_a_tenants_settings_make_its_four_schedules_in_its_zone():
    schedules = {s["id"]: s for s in tenant_schedules(TENANT)}
    assert {sid: (s["job_type"], s.get("cron"), s.get("timezone"))
            for sid, s in schedules.items()} == {
        "billing.invoice-generation": ("invoice-generation", "0 6 25 * *", "Africa/Johannesburg"),
        "billing.payment-reminder": ("payment-reminder", "0 9 * * *", "Africa/Johannesburg"),
        "billing.sars-deadline": ("sars-deadline", "0 8 * * *", "Africa/Johannesburg"),
        "billing.bank-sync": ("bank-sync", "0 */4 * * *", "Africa/Johannesburg"),
    }
    for definition in schedules.values():  # each a valid schedule whose payload fits
        schedule = parse_schedule({**definition, "name": definition["id"], "tenant_id": "acme"})
        SEEDS[schedule.job_type].check_payload(schedule.payload)
    # a sync interval that does not divide the day: every 5 hours of elapsed time
    odd = {s["id"]: s for s in tenant_schedules({**TENANT, "bankSyncHours": 5})}
    assert odd["billing.bank-sync"]["every_ms"] == 5 * 3_600_000


@pytest.mark.parametrize("change, message", [
    ({"timeZone": "Mars/Base"}, "no IANA zone"),
    ({"invoiceDay": 31}, "invoiceDay is 31, not a whole number 1..28"),
    ({"reminderHour": 24}, "reminderHour is 24"),
    ({"bankSyncHours": 0}, "bankSyncHours is 0"),
])
def test_settings_that_cannot_be_scheduled_are_named(change, message):
    with pytest.raises(ValueError, match=message):
        tenant_schedules({**TENANT, **change})
