"""Billing and compliance (seed 000's billing scheduler; seed 002's payment webhooks) as handlers
against the billing API (the default service ``api``, CRONBUS_API_URL; the development one is
:mod:`cronbus.clients.devstack.billing_api`). Each job reads the tenant (its time zone and chosen
times) and works in the tenant's calendar: "today" is the job's scheduled time in that zone.

- ``invoice-generation`` (a tenant, ``billing_month`` YYYY-MM, default the month of the job's
  scheduled time in the tenant's zone): the month's invoices, one per active customer that has
  none (``generateInvoices``; a second run for the month creates nothing); ``dry_run`` only
  reports what it would create. A job started by ``invoice-due`` events (stage ``generate``)
  makes the one ``generateInvoice`` call naming the events it covers, as it always did.
- ``payment-reminder``: each overdue unpaid invoice (``invoice_ids``: only those) gets the next
  step of the ladder gentle -> second -> final -> escalation (1, 7, 14, 30 days overdue; one
  step a day at most, each step once): :func:`.billing_rules.next_reminder`.
- ``sars-deadline``: each VAT201 / EMP201 / IRP5 deadline of the tenant gets its alert when it
  is N days away, for each N the tenant chose (:func:`.billing_rules.deadline_alert`), once per
  (deadline, N); ``submission_type`` / ``days_until_deadline`` narrow a run to one.
- ``bank-sync``: each bank account (or ``account_id``) synced from its last synced sequence, a
  batch at a time until caught up; ordered, so one tenant's syncs never overlap.
- ``billing-schedules``: for the system tenant (the hourly built-in) one job per tenant of the
  billing API; for a tenant, its four schedules kept in step with its settings, in its zone.
- ``payment-webhook``: a provider's webhook (from ``payment-webhook-received`` events, or
  published as a job) verified (HMAC-SHA256, :func:`.billing_rules.verify_signature`; a bad one
  is ``BadSignature``, dead-lettered at once, nothing called) and its payment recorded once
  (``Idempotency-Key: <provider>:<provider event id>``).
"""

from __future__ import annotations

import json
import logging
import re
from datetime import date
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from cronbus.agents.processing.handlers import JobContext, JobRejected
from cronbus.families import billing_rules as rules
from cronbus.streams import topics
from cronbus.streams.catalog import EventType, Handler, JobType, always, by_field
from cronbus.streams.events import TENANT_ID_PATTERN, DomainEvent, Identifier, InvoiceDue
from cronbus.streams.jobs import Job

log = logging.getLogger(__name__)
TENANT_ID = re.compile(TENANT_ID_PATTERN)
SubmissionType = Literal["VAT201", "EMP201", "IRP5"]
ReminderStep = Literal["gentle", "second", "final", "escalation"]
ProviderName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")]
# seed 000: 3 retries, 1 s doubling (1, 2, 4 s); seed 002's webhooks: 5
BILLING_RETRIES, BILLING_BACKOFF_S = 3, 1.0
WEBHOOK_RETRIES, WEBHOOK_BACKOFF_S = 5, 1.0
REMINDERS_AT_ONCE = 10


class InvoiceGeneration(BaseModel):
    """A scheduled run names its month (or takes the month it runs in); one started by
    invoice-due events covers those."""

    model_config = ConfigDict(frozen=True)

    billing_month: Annotated[str, StringConstraints(pattern=r"^\d{4}-(0[1-9]|1[0-2])$")] | None = (
        Field(default=None, description="YYYY-MM"))
    dry_run: bool = False


class PaymentReminder(BaseModel):
    model_config = ConfigDict(frozen=True)

    # none: the ladder says each invoice's next step; a step: that one, to those not sent it
    reminder_type: ReminderStep | None = None
    invoice_ids: list[Identifier] = Field(default_factory=list)  # empty: every overdue invoice


class SarsDeadline(BaseModel):
    """The daily check takes neither field: every type, the tenant's chosen days."""

    model_config = ConfigDict(frozen=True)

    submission_type: SubmissionType | None = None
    # the alert for deadlines exactly this many days away, chosen by the tenant or not
    days_until_deadline: int | None = Field(default=None, ge=0, le=366)


class BankSync(BaseModel):
    model_config = ConfigDict(frozen=True)

    account_id: Identifier | None = None  # none: every account of the tenant


class BillingSchedules(BaseModel):
    """No fields: the system tenant's job fans out to tenants; a tenant's keeps its schedules."""

    model_config = ConfigDict(frozen=True)


class PaymentWebhook(BaseModel):
    """A provider's webhook as the endpoint received it: the body exactly as sent (the
    signature is over its bytes), the signature header's value."""

    model_config = ConfigDict(frozen=True)

    provider: ProviderName
    provider_event_id: Annotated[str, StringConstraints(min_length=1, max_length=160)]
    signature: Annotated[str, StringConstraints(max_length=2000)] | None = None
    body: Annotated[str, StringConstraints(max_length=512 * 1024)]
    received_at: AwareDatetime


class PaymentWebhookReceived(DomainEvent):
    """A webhook received; its ``event_id`` is always ``<provider>:<provider_event_id>`` (one
    given otherwise, a producer's own, is replaced), so a provider resending the event makes
    the very same job."""

    model_config = ConfigDict(str_strip_whitespace=False)  # the body is signed as it is

    type: Literal[topics.PAYMENT_WEBHOOK_RECEIVED] = topics.PAYMENT_WEBHOOK_RECEIVED
    provider: ProviderName
    provider_event_id: Annotated[str, StringConstraints(min_length=1, max_length=160)]
    signature: Annotated[str, StringConstraints(max_length=2000)] | None = None
    body: Annotated[str, StringConstraints(max_length=512 * 1024)]
    received_at: AwareDatetime

    @model_validator(mode="before")
    @classmethod
    def _event_id_is_the_providers(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "provider" not in data or "provider_event_id" not in data:
            return data
        return {**data, "event_id": f"{data['provider']}:{data['provider_event_id']}"}


class UnknownTenant(JobRejected):
    """The billing API knows no such tenant."""


class BadTenantSettings(JobRejected):
    """A tenant's settings cannot be scheduled (a time zone that is no IANA zone, say)."""


class BadSignature(JobRejected):
    """A webhook whose signature is missing or does not verify: never applied."""


class BadWebhookBody(JobRejected):
    """A verified webhook whose body is not a payment event cronbus can read."""


TENANTS = """
query Tenants($after: String) { tenants(first: 100, after: $after) { nodes { id } endCursor } }
"""
TENANT = """
query Tenant($id: ID!) {
  tenant(id: $id) {
    id timeZone invoiceDay invoiceHour reminderHour sarsAlertHour sarsAlertDays bankSyncHours
  }
}
"""
MONTHS_INVOICES = """
query MonthsInvoices($tenantId: ID!, $month: String) {
  customers(tenantId: $tenantId) { id active }
  invoices(tenantId: $tenantId, month: $month) { id customerId }
}
"""
GENERATE_INVOICES = """
mutation GenerateInvoices($tenantId: ID!, $month: String!, $issuedOn: String!) {
  generateInvoices(tenantId: $tenantId, month: $month, issuedOn: $issuedOn) {
    month existing created { id customerId amount dueDate }
  }
}
"""
# the invoice-due route's call, as it has always been (the events a job covers)
GENERATE_INVOICE = """
mutation GenerateInvoice($input: GenerateInvoiceInput!) {
  generateInvoice(input: $input) { jobId tenantId applied }
}
"""
UNPAID_INVOICES = """
query Unpaid($tenantId: ID!) {
  invoices(tenantId: $tenantId, unpaidOnly: true) { id dueDate reminders { step sentOn } }
}
"""
SEND_REMINDER = """
mutation Remind($invoiceId: ID!, $step: String!, $sentOn: String!) {
  sendReminder(invoiceId: $invoiceId, step: $step, sentOn: $sentOn) { sent }
}
"""
DEADLINES = """
query Deadlines($tenantId: ID!) {
  sarsDeadlines(tenantId: $tenantId) { id submissionType dueDate alertsSent }
}
"""
SEND_ALERT = """
mutation Alert($deadlineId: ID!, $daysBefore: Int!, $daysUntil: Int!) {
  sendSarsAlert(deadlineId: $deadlineId, daysBefore: $daysBefore,
                daysUntilDeadline: $daysUntil) { sent }
}
"""
ACCOUNTS = """
query Accounts($tenantId: ID!) { bankAccounts(tenantId: $tenantId) { id lastSyncedSequence } }
"""
SYNC_FEED = """
mutation Sync($accountId: ID!, $after: Int!) {
  syncBankFeed(accountId: $accountId, afterSequence: $after) { fromSequence toSequence count }
}
"""
RECORD_PAYMENT = """
mutation Pay($input: PaymentInput!) {
  recordPayment(input: $input) { applied invoice { id status amountPaid } }
}
"""


async def _tenant(job: Job, ctx: JobContext) -> dict[str, Any]:
    found = (await ctx.graphql("tenant", TENANT, {"id": job.tenant_id}))["tenant"]
    if found is None:
        raise UnknownTenant(f"the billing API knows no tenant {job.tenant_id}",
                            service=ctx.client.service)
    return found  # type: ignore[no-any-return]


def _today(job: Job, tenant: dict[str, Any], ctx: JobContext) -> date:
    try:
        return rules.local_date(job.scheduled_at, tenant["timeZone"])
    except ValueError as exc:
        raise BadTenantSettings(f"tenant {job.tenant_id}: {exc}",
                                service=ctx.client.service) from None


async def generate_invoices(job: Job, ctx: JobContext) -> None:
    if job.triggered_by == "event":
        # invoice-due events (stage generate): the one call naming the events covered, under
        # the job's own id, exactly as the single-call job type made it (no step kept: the
        # key makes a repeat harmless, and this is the hot path)
        covers = job.covers
        variables = {"input": {"tenantId": job.tenant_id, "jobId": job.job_id,
                               "eventIds": covers.event_ids if covers else [],
                               "eventCount": covers.count if covers else 0}}
        await ctx.client.graphql(GENERATE_INVOICE, variables, idempotency_key=job.job_id)
        return
    tenant = await _tenant(job, ctx)
    today = _today(job, tenant, ctx)
    month = ctx.payload.billing_month or today.strftime("%Y-%m")
    found = await ctx.graphql(f"read:{month}", MONTHS_INVOICES,
                              {"tenantId": job.tenant_id, "month": month})
    billed = {i["customerId"] for i in found["invoices"]}
    missing = sorted(c["id"] for c in found["customers"] if c["active"] and c["id"] not in billed)
    if ctx.payload.dry_run:
        await ctx.progress(billing_month=month, dry_run=True, would_create=len(missing),
                           customers=missing[:100], existing=len(billed))
        return
    if not missing:
        await ctx.progress(billing_month=month, created=0, existing=len(billed))
        return
    made = (await ctx.graphql(f"generate:{month}", GENERATE_INVOICES, {
        "tenantId": job.tenant_id, "month": month, "issuedOn": today.isoformat()}))
    generated = made["generateInvoices"]
    await ctx.progress(billing_month=month, created=len(generated["created"]),
                       existing=generated["existing"])


async def send_payment_reminders(job: Job, ctx: JobContext) -> None:
    tenant = await _tenant(job, ctx)
    today = _today(job, tenant, ctx)
    unpaid = (await ctx.graphql("unpaid", UNPAID_INVOICES,
                                {"tenantId": job.tenant_id}))["invoices"]
    only = set(ctx.payload.invoice_ids)
    chosen: list[tuple[str, str]] = []
    for invoice in unpaid:
        if only and invoice["id"] not in only:
            continue
        overdue = (today - date.fromisoformat(invoice["dueDate"])).days
        sent = [rules.SentReminder(r["step"], date.fromisoformat(r["sentOn"]))
                for r in invoice["reminders"]]
        wanted = ctx.payload.reminder_type
        if wanted is None:
            step = rules.next_reminder(overdue, sent, today)
        else:  # a step asked for by name: to overdue invoices not sent it yet
            step = wanted if overdue > 0 and wanted not in {r.step for r in sent} else None
        if step is not None:
            chosen.append((invoice["id"], step))

    async def remind(choice: tuple[str, str]) -> None:
        invoice_id, step = choice
        await ctx.graphql(f"remind:{invoice_id}:{step}", SEND_REMINDER,
                          {"invoiceId": invoice_id, "step": step, "sentOn": today.isoformat()})

    await ctx.each(chosen, remind, at_once=REMINDERS_AT_ONCE)
    await ctx.progress(today=today.isoformat(), unpaid=len(unpaid), reminded=len(chosen),
                       steps={step: sum(1 for _, s in chosen if s == step)
                              for step in rules.REMINDER_LADDER})


async def send_sars_alerts(job: Job, ctx: JobContext) -> None:
    tenant = await _tenant(job, ctx)
    today = _today(job, tenant, ctx)
    chosen_days = tenant.get("sarsAlertDays") or {}
    wanted_type, exact = ctx.payload.submission_type, ctx.payload.days_until_deadline
    deadlines = (await ctx.graphql("deadlines", DEADLINES,
                                   {"tenantId": job.tenant_id}))["sarsDeadlines"]
    alerts: list[tuple[str, int, int]] = []  # (deadline, days before, days until)
    for deadline in deadlines:
        kind = deadline["submissionType"]
        if kind not in rules.SUBMISSION_TYPES or (wanted_type and kind != wanted_type):
            continue
        days_until = (date.fromisoformat(deadline["dueDate"]) - today).days
        if exact is not None:
            stage = exact if days_until == exact and exact not in deadline["alertsSent"] else None
        else:
            stage = rules.deadline_alert(days_until,
                                         chosen_days.get(kind, rules.DEFAULT_ALERT_DAYS),
                                         deadline["alertsSent"])
        if stage is not None:
            alerts.append((deadline["id"], stage, days_until))
    for deadline_id, stage, days_until in alerts:
        await ctx.graphql(f"alert:{deadline_id}:{stage}", SEND_ALERT,
                          {"deadlineId": deadline_id, "daysBefore": stage, "daysUntil": days_until})
    await ctx.progress(today=today.isoformat(), deadlines=len(deadlines), alerted=len(alerts))


async def sync_bank_feeds(job: Job, ctx: JobContext) -> None:
    accounts = (await ctx.graphql("accounts", ACCOUNTS,
                                  {"tenantId": job.tenant_id}))["bankAccounts"]
    if ctx.payload.account_id is not None:
        accounts = [a for a in accounts if a["id"] == ctx.payload.account_id]
    synced = 0
    for account in accounts:
        after = account["lastSyncedSequence"]
        while True:  # each batch from where the last one ended; a retry replays kept steps
            batch = (await ctx.graphql(f"sync:{account['id']}:{after}", SYNC_FEED,
                                       {"accountId": account["id"], "after": after}))
            batch = batch["syncBankFeed"]
            if batch["count"] == 0:
                break
            synced += batch["count"]
            after = batch["toSequence"]
    await ctx.progress(accounts=len(accounts), synced=synced)


async def keep_billing_schedules(job: Job, ctx: JobContext) -> None:
    if job.tenant_id == ctx.settings.system_tenant:
        await _each_tenant(ctx)
        return
    tenant = (await ctx.graphql("tenant", TENANT, {"id": job.tenant_id}))["tenant"]
    try:
        wanted = [] if tenant is None else rules.tenant_schedules(tenant)
    except ValueError as exc:
        raise BadTenantSettings(str(exc), service=ctx.client.service) from None
    changed = await ctx.keep_schedules("billing-schedules", wanted)
    await ctx.progress(schedules=len(changed.kept), written=len(changed.written),
                       removed=len(changed.removed))


async def _each_tenant(ctx: JobContext) -> None:
    """One billing-schedules job per tenant of the billing API, a page at a time."""
    after: str | None = None
    emitted = 0
    while True:
        page = (await ctx.graphql(f"tenants-after:{after or ''}", TENANTS,
                                  {"after": after}))["tenants"]
        for tenant in page["nodes"]:
            if not TENANT_ID.match(tenant["id"]) or tenant["id"] == ctx.settings.system_tenant:
                log.warning("billing tenant id %r is no tenant id (%s) or is the system "
                            "tenant: no schedules kept", tenant["id"], TENANT_ID.pattern)
                continue
            await ctx.emit("billing-schedules", {}, ref=f"tenant:{tenant['id']}",
                           tenant_id=tenant["id"])
            emitted += 1
        await ctx.progress(tenants=emitted)
        after = page["endCursor"]
        if after is None:
            return


def payment_of(body: str, provider_event_id: str) -> dict[str, Any] | None:
    """A verified webhook body's payment (invoice id, amount in major units, currency), None
    for an event type that is no payment, ValueError naming what is wrong. The body is
    Stripe-shaped: ``{"id", "type", "data": {"object": {"amount_received" | "amount",
    "currency", "metadata": {"invoice_id"}}}}``, the amount in minor units (cents)."""
    try:
        event = json.loads(body)
    except ValueError:
        raise ValueError("the body is not JSON") from None
    if not isinstance(event, dict):
        raise ValueError("the body is not a JSON object")
    if event.get("id") != provider_event_id:
        raise ValueError(f"the body's id {event.get('id')!r} is not the provider event id "
                         f"{provider_event_id!r}")
    if event.get("type") not in PAYMENT_EVENT_TYPES:
        return None
    found = (event.get("data") or {}).get("object") or {}
    invoice_id = (found.get("metadata") or {}).get("invoice_id")
    amount = found.get("amount_received", found.get("amount"))
    if not isinstance(invoice_id, str) or not invoice_id:
        raise ValueError("data.object.metadata.invoice_id is missing")
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise ValueError("data.object.amount_received (or amount) is no positive whole number "
                         "of minor units")
    return {"invoiceId": invoice_id, "amount": amount / 100,
            "currency": str(found.get("currency") or "zar").upper()}


PAYMENT_EVENT_TYPES = frozenset({"payment_intent.succeeded", "charge.succeeded"})


async def apply_payment_webhook(job: Job, ctx: JobContext) -> None:
    webhook: PaymentWebhook = ctx.payload
    service = ctx.client.service
    secret = ctx.settings.payment_webhook_secrets.get(webhook.provider.lower())
    if secret is None:
        raise BadSignature(f"no secret for provider {webhook.provider}: set "
                           f"CRONBUS_PAYMENT_WEBHOOK_SECRETS__{webhook.provider.upper()}",
                           service=service)
    try:
        rules.verify_signature(webhook.signature, webhook.body,
                               secret.get_secret_value().split(),
                               received_at=webhook.received_at.timestamp(),
                               tolerance_s=ctx.settings.payment_webhook_tolerance_s)
    except rules.BadSignatureReason as exc:
        raise BadSignature(f"{webhook.provider} event {webhook.provider_event_id}: {exc}",
                           service=service) from None
    try:
        payment = payment_of(webhook.body, webhook.provider_event_id)
    except ValueError as exc:
        raise BadWebhookBody(f"{webhook.provider} event {webhook.provider_event_id}: {exc}",
                             service=service) from None
    if payment is None:
        await ctx.progress(applied=False, ignored="not a payment event")
        return
    key = f"{webhook.provider}:{webhook.provider_event_id}"  # a resent event applies once
    variables = {"input": {**payment, "tenantId": job.tenant_id, "provider": webhook.provider,
                           "providerEventId": webhook.provider_event_id,
                           "paidAt": webhook.received_at.isoformat()}}
    answer = await ctx.step("record-payment", lambda: ctx.client.graphql(
        RECORD_PAYMENT, variables, idempotency_key=key))
    recorded = answer["recordPayment"]
    await ctx.progress(invoice=payment["invoiceId"], applied=recorded["applied"],
                       status=(recorded["invoice"] or {}).get("status"))


def _billing(name: str, handler: Handler, payload: type[BaseModel], **options: Any) -> JobType:
    """One of the seed's job types: its retries and backoff (1, 2, 4 s)."""
    return JobType(name, handler=handler, payload=payload, retries=BILLING_RETRIES,
                   backoff_s=BILLING_BACKOFF_S, **options)


JOB_TYPES = [
    # billing waits for a burst of invoice-due events to end
    _billing("invoice-generation", generate_invoices, InvoiceGeneration, debounce="trailing"),
    _billing("payment-reminder", send_payment_reminders, PaymentReminder, debounce="trailing"),
    _billing("sars-deadline", send_sars_alerts, SarsDeadline),
    # a bank's ledger must see one tenant's syncs in order
    _billing("bank-sync", sync_bank_feeds, BankSync, ordered=True),
    # ordered: one tenant's schedules are kept by one job at a time
    _billing("billing-schedules", keep_billing_schedules, BillingSchedules, ordered=True),
    JobType("payment-webhook", handler=apply_payment_webhook, payload=PaymentWebhook,
            retries=WEBHOOK_RETRIES, backoff_s=WEBHOOK_BACKOFF_S),
]

EVENT_TYPES = [
    EventType(topics.INVOICE_DUE, InvoiceDue, by_field("stage", {
        "generate": "invoice-generation", "remind": "payment-reminder"})),
    EventType(topics.PAYMENT_WEBHOOK_RECEIVED, PaymentWebhookReceived, always("payment-webhook")),
]
