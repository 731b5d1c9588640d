"""The billing family against the development billing API, through a real worker: a month's
invoices generated once however often the job runs (a dry run changes nothing); reminders
climbing the ladder day by day, never a step twice; SARS alerts at the tenant's chosen days,
each once; bank syncs in order with a gapless ledger; billing-schedules keeping each tenant's
schedules in its time zone (and moving them when the zone changes); payment webhooks applied
once however often they arrive, a bad signature dead-lettered by name with no call made."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from cronbus.clients.devstack.billing_api import BillingApi
from cronbus.clients.kafka.publisher import EventPublisher
from cronbus.clients.redis.job_status import JobStatusStore
from cronbus.families.billing import PaymentWebhookReceived
from cronbus.families.billing_rules import sign
from cronbus.streams import headers, topics
from cronbus.streams.jobs import Job, job_id_for
from tests.integration.kafka import eventually, read_topic

ZA = "Africa/Johannesburg"
# a fixed day in the tenant's zone: jobs say which day they run by their scheduled time
DAY = datetime(2026, 12, 1, 10, tzinfo=UTC)  # 12:00 in Johannesburg


@pytest.fixture
def billing(tmp_path: Path) -> Iterator[BillingApi]:
    api = BillingApi(tmp_path / "billing").start()
    yield api
    api.stop()


def seed(billing: BillingApi, body: dict) -> None:
    httpx.post(f"{billing.control_url}/seed", json=body, timeout=10).raise_for_status()


def state(billing: BillingApi) -> dict[str, Any]:
    return httpx.get(f"{billing.control_url}/state", timeout=10).json()


def job(job_type: str, tenant: str, ref: str, at: datetime = DAY, **payload: object) -> Job:
    return Job(job_id=job_id_for(tenant, job_type, ref), tenant_id=tenant, type=job_type,
               triggered_by="manual", scheduled_at=at, payload=payload)


async def statuses(settings, job_ids: list[str]) -> list[dict]:
    client = aioredis.Redis.from_url(settings.redis_url)
    try:
        store = JobStatusStore(client, namespace=settings.redis_namespace, ttl_s=60)
        return [await store.get(job_id) or {} for job_id in job_ids]
    finally:
        await client.aclose()


async def run(settings, *jobs: Job) -> list[dict]:
    """Publish the jobs and wait until each completed; their statuses (with progress)."""
    async with EventPublisher(settings.broker_url) as publisher:
        for one in jobs:
            await publisher.publish_raw(topics.job_topic(one.type), one.encode(),
                                        key=one.tenant_id.encode())
        await publisher.flush()
    ids = [one.job_id for one in jobs]
    return await eventually(lambda: statuses(settings, ids),
                            lambda found: all(s.get("state") == "completed" for s in found),
                            timeout_s=30, what=f"{', '.join(j.type for j in jobs)} completed")


async def test_invoices_reminders_alerts_and_bank_syncs_apply_once_each(
    stack, settings, start_worker, billing
):
    def day(n: int) -> str:
        return (DAY + timedelta(days=n)).date().isoformat()

    seed(billing, {
        "tenants": [{"id": "acme", "timeZone": ZA,
                     "sarsAlertDays": {"VAT201": [7, 3, 1], "EMP201": [14, 2]}}],
        "customers": [{"id": f"cust-{n}", "tenantId": "acme", "monthlyAmount": 100.0 + n}
                      for n in range(5)] + [{"id": "cust-gone", "tenantId": "acme",
                                             "active": False}],
        # overdue by 1, 7 and 40 days on DAY; one paid; one not yet due
        "invoices": [
            {"id": f"old-{n}", "tenantId": "acme", "customerId": "cust-0", "month": "2026-10",
             "amount": 50.0, "dueDate": day(-n)} for n in (1, 7, 40)]
        + [{"id": "paid", "tenantId": "acme", "customerId": "cust-1", "month": "2026-10",
            "amount": 50.0, "dueDate": day(-40), "status": "paid"},
           {"id": "future", "tenantId": "acme", "customerId": "cust-2", "month": "2026-11",
            "amount": 50.0, "dueDate": day(3)}],
        "deadlines": [{"id": f"vat+{n}", "tenantId": "acme", "submissionType": "VAT201",
                       "dueDate": day(n)} for n in (7, 5, 3, 1, 20, -1)]
        + [{"id": "emp+14", "tenantId": "acme", "submissionType": "EMP201", "dueDate": day(14)},
           {"id": "emp+7", "tenantId": "acme", "submissionType": "EMP201", "dueDate": day(7)}],
        "bankAccounts": [{"id": "acc-1", "tenantId": "acme", "feed": 35, "batchSize": 10}],
    })
    httpx.post(f"{billing.control_url}/delay", json={"seconds": 0.02}, timeout=5)
    start_worker(roles=("processor",), api_url=billing.url,
                 job_types="invoice-generation,payment-reminder,sars-deadline,bank-sync")

    # invoices: a dry run creates nothing and says what it would; two runs create them once
    [dry] = await run(settings, job("invoice-generation", "acme", "dry", dry_run=True))
    assert dry["progress"] == {"billing_month": "2026-12", "dry_run": True, "would_create": 5,
                               "customers": [f"cust-{n}" for n in range(5)], "existing": 0}
    assert not [i for i in state(billing)["invoices"].values() if i["month"] == "2026-12"]
    [first] = await run(settings, job("invoice-generation", "acme", "run-1"))
    [second] = await run(settings, job("invoice-generation", "acme", "run-2",
                                       at=DAY + timedelta(days=1)))
    december = [i for i in state(billing)["invoices"].values() if i["month"] == "2026-12"]
    assert sorted(i["customerId"] for i in december) == [f"cust-{n}" for n in range(5)]
    assert {i["dueDate"] for i in december} == {day(7)}  # issued on DAY, payment terms 7 days
    assert (first["progress"]["created"], second["progress"]["created"]) == (5, 0)
    assert state(billing)["applied"]["generateInvoices"] == 1

    # reminders: day by day up the ladder; a rerun the same day sends nothing
    sent_by_day = {}
    for n, ref in ((0, "d0"), (0, "d0-again"), (1, "d1"), (2, "d2"), (3, "d3"), (4, "d4")):
        await run(settings, job("payment-reminder", "acme", ref, at=DAY + timedelta(days=n)))
        sent_by_day[ref] = {i: [r["step"] for r in s["reminders"]]
                            for i, s in state(billing)["invoices"].items() if s["reminders"]}
    assert sent_by_day["d0"] == {"old-1": ["gentle"], "old-7": ["gentle"], "old-40": ["gentle"]}
    assert sent_by_day["d0-again"] == sent_by_day["d0"]
    assert sent_by_day["d1"] == {"old-1": ["gentle"], "old-7": ["gentle", "second"],
                                 "old-40": ["gentle", "second"]}
    assert sent_by_day["d4"] == {"old-1": ["gentle"], "old-7": ["gentle", "second"],
                                 "old-40": ["gentle", "second", "final", "escalation"],
                                 "future": ["gentle"]}  # due on day 3: a day overdue on day 4
    assert not state(billing)["refused"], "no step was ever asked twice"

    # SARS: each deadline's alert at the tenant's days, once; four days later the next ones
    await run(settings, job("sars-deadline", "acme", "s0"), job("sars-deadline", "acme", "s0b"))
    alerts = {i: d["alerts"] for i, d in state(billing)["deadlines"].items()}
    assert {i: [a["daysBefore"] for a in a_list] for i, a_list in alerts.items()} == {
        "vat+7": [7], "vat+5": [7], "vat+3": [3], "vat+1": [1], "vat+20": [], "vat+-1": [],
        "emp+14": [14], "emp+7": [14]}  # EMP201's 14-day alert, late for emp+7
    assert alerts["vat+5"] == [{"daysBefore": 7, "daysUntilDeadline": 5}]
    await run(settings, job("sars-deadline", "acme", "s4", at=DAY + timedelta(days=4)))
    later = {i: [a["daysBefore"] for a in d["alerts"]]
             for i, d in state(billing)["deadlines"].items()}
    assert later["vat+7"] == [7, 3] and later["vat+5"] == [7, 1] and later["emp+7"] == [14]
    assert later["vat+3"] == [3], "due in -1 days now: no more alerts"
    # one VAT201 run for a named day: only deadlines that far away
    await run(settings, job("sars-deadline", "acme", "s-named", submission_type="VAT201",
                            days_until_deadline=16, at=DAY + timedelta(days=4)))
    assert [a["daysBefore"] for a in state(billing)["deadlines"]["vat+20"]["alerts"]] == [16]

    # bank sync: four jobs at once, then the feed grows and one more: a gapless ledger
    await run(settings, *(job("bank-sync", "acme", f"sync-{n}") for n in range(4)))
    seed(billing, {"bankAccounts": [{"id": "acc-1", "feed": 52}]})
    await run(settings, job("bank-sync", "acme", "sync-after-growth"))
    account = state(billing)["accounts"]["acc-1"]
    assert account["problems"] == []
    assert [(b["from"], b["to"]) for b in account["ledger"]] == [
        (1, 10), (11, 20), (21, 30), (31, 35), (36, 45), (46, 52)]
    assert account["lastSynced"] == 52


async def schedule_records(settings, tenants: set[str]) -> dict[tuple[str, str], list]:
    """Every record of these tenants' schedules on the schedules topic, oldest first."""
    found: dict[tuple[str, str], list] = {}
    for record in await read_topic(settings.broker_url, topics.SCHEDULES, timeout_s=5, idle_s=0.5):
        tenant, _, schedule_id = record.key.decode().partition("/")
        if tenant in tenants:
            found.setdefault((tenant, schedule_id), []).append(
                json.loads(record.value) if record.value is not None else None)
    return found


def current(records: dict) -> dict:
    return {key: history[-1] for key, history in records.items() if history[-1] is not None}


async def test_billing_schedules_keep_each_tenants_schedules_in_its_zone(
    stack, settings, start_worker, billing
):
    seed(billing, {"tenants": [
        {"id": "t-za", "timeZone": ZA, "invoiceDay": 25, "reminderHour": 9},
        {"id": "t-ny", "timeZone": "America/New_York", "invoiceDay": 1, "bankSyncHours": 6},
    ]})
    start_worker(roles=("processor",), api_url=billing.url, job_types="billing-schedules")
    # the hourly built-in's job: one per tenant, each keeping its schedules
    await run(settings, job("billing-schedules", settings.system_tenant, "hour-1"))
    tenants = {"t-za", "t-ny"}
    records = await eventually(lambda: schedule_records(settings, tenants),
                               lambda r: len(current(r)) == 8, timeout_s=30,
                               what="four schedules for each tenant")
    kept = current(records)
    assert {k: (s["job_type"], s.get("cron"), s["timezone"]) for k, s in kept.items()} == {
        ("t-za", "billing.invoice-generation"): ("invoice-generation", "0 6 25 * *", ZA),
        ("t-za", "billing.payment-reminder"): ("payment-reminder", "0 9 * * *", ZA),
        ("t-za", "billing.sars-deadline"): ("sars-deadline", "0 8 * * *", ZA),
        ("t-za", "billing.bank-sync"): ("bank-sync", "0 */4 * * *", ZA),
        ("t-ny", "billing.invoice-generation"): ("invoice-generation", "0 6 1 * *",
                                                 "America/New_York"),
        ("t-ny", "billing.payment-reminder"): ("payment-reminder", "0 9 * * *",
                                               "America/New_York"),
        ("t-ny", "billing.sars-deadline"): ("sars-deadline", "0 8 * * *", "America/New_York"),
        ("t-ny", "billing.bank-sync"): ("bank-sync", "0 */6 * * *", "America/New_York"),
    }

    # t-za moves to London and its reminders to 10:00: its schedules follow at the next keep;
    # t-ny's, unchanged, are not written again
    seed(billing, {"tenants": [{"id": "t-za", "timeZone": "Europe/London", "reminderHour": 10}]})
    await run(settings, job("billing-schedules", settings.system_tenant, "hour-2"))
    records = await eventually(
        lambda: schedule_records(settings, tenants),
        lambda r: all(s["timezone"] == "Europe/London"
                      for (t, _), s in current(r).items() if t == "t-za"),
        timeout_s=30, what="t-za's schedules in its new zone")
    kept = current(records)
    assert kept["t-za", "billing.payment-reminder"]["cron"] == "0 10 * * *"
    assert kept["t-za", "billing.invoice-generation"]["cron"] == "0 6 25 * *"
    assert all(len(history) == 1 for (t, _), history in records.items() if t == "t-ny")


SECRET = "whsec_cronbus_test"


def webhook(provider_event_id: str, invoice_id: str, cents: int, *, secret: str = SECRET,
            signed_at: datetime | None = None) -> PaymentWebhookReceived:
    now = datetime.now(UTC)
    body = json.dumps({"id": provider_event_id, "type": "payment_intent.succeeded",
                       "data": {"object": {"amount_received": cents, "currency": "zar",
                                           "metadata": {"invoice_id": invoice_id}}}})
    return PaymentWebhookReceived(
        tenant_id="acme", occurred_at=now, provider="stripe", provider_event_id=provider_event_id,
        signature=sign(body, secret, int((signed_at or now).timestamp())), body=body,
        received_at=now)


async def test_payment_webhooks_apply_once_and_a_bad_signature_is_dead_lettered_uncalled(
    stack, settings, start_worker, billing
):
    seed(billing, {
        "tenants": [{"id": "acme"}],
        "invoices": [{"id": f"INV-{n}", "tenantId": "acme", "customerId": "c", "month": "2026-12",
                      "amount": 125.5, "dueDate": "2026-12-08"} for n in (1, 2, 3)],
    })
    start_worker(roles=("ingest", "processor"), api_url=billing.url, job_types="payment-webhook",
                 payment_webhook_secrets=json.dumps({"stripe": SECRET}))
    good = webhook("evt_good", "INV-1", 12550)
    # the API fails the first call: the job retries (the same Idempotency-Key) and applies once
    httpx.post(f"{billing.control_url}/fail", json={"status": 503, "times": 1}, timeout=5)
    async with EventPublisher(settings.broker_url) as publisher:
        await publisher.publish(good)
        await publisher.publish(good)  # the provider resends it
        await publisher.publish(webhook("evt_forged", "INV-2", 12550, secret="whsec_guess"))
        await publisher.publish(webhook("evt_stale", "INV-3", 12550,
                                        signed_at=datetime.now(UTC) - timedelta(hours=1)))
        await publisher.flush()

    dead = await eventually(
        lambda: read_topic(settings.broker_url,
                           topics.dead_letter_topic(topics.job_topic("payment-webhook")),
                           timeout_s=5, idle_s=0.5),
        lambda records: len(records) >= 2, timeout_s=30, what="two webhooks dead-lettered")
    found = await eventually(lambda: state(billing), lambda s: s["invoices"]["INV-1"]["status"]
                             == "paid", timeout_s=30, what="INV-1 paid")
    stories = sorted((headers.decode(r.headers)[headers.ERROR_TYPE],
                      headers.decode(r.headers)[headers.ERROR],
                      headers.decode(r.headers)[headers.ATTEMPTS]) for r in dead)
    assert [(kind, attempts) for kind, _, attempts in stories] == [("BadSignature", "1")] * 2
    assert "evt_forged: no v1 signature matches" in " ".join(e for _, e, _ in stories)
    assert "evt_stale: timestamp" in " ".join(e for _, e, _ in stories)
    assert [(p["invoiceId"], p["amount"], p["providerEventId"]) for p in found["payments"]] == [
        ("INV-1", 125.5, "evt_good")], "applied once; the forged and stale ones never called"
    assert found["applied"] == {"recordPayment": 1}
    assert set(found["keys"]) == {"stripe:evt_good"}, "every call under the provider's key"
    assert {i: found["invoices"][i]["status"] for i in ("INV-2", "INV-3")} == {
        "INV-2": "open", "INV-3": "open"}
