"""The billing API of the billing and compliance design (seed 000), for development and tests: a
real GraphQL server (Ariadne under uvicorn) holding tenants with their time zone and chosen
times, customers, invoices, SARS deadlines, bank accounts with a feed and a ledger of synced
batches, and payments.

- ``tenants(first, after)`` (a page: ``{nodes, endCursor}``) and ``tenant(id)``: ``timeZone``,
  ``invoiceDay``, ``invoiceHour``, ``reminderHour``, ``sarsAlertHour``, ``sarsAlertDays``
  (submission type -> days before, e.g. ``{"VAT201": [7, 3, 1]}``), ``bankSyncHours``,
  ``paymentTermsDays``
- ``customers(tenantId)``, ``invoices(tenantId, month, unpaidOnly)``: an invoice has its month,
  amount, due date, status (``open``/``paid``) and the reminders sent (step and local date)
- ``generateInvoices(tenantId, month, issuedOn)``: one invoice per active customer for the
  month, unless it has one: run twice for a month, the second creates nothing
- ``sendReminder(invoiceId, step, sentOn)``: a step is recorded once per invoice; asked again,
  nothing is sent (counted as refused)
- ``sarsDeadlines(tenantId)`` / ``sendSarsAlert(deadlineId, daysBefore, daysUntilDeadline)``:
  each (deadline, days before) alerted once
- ``bankAccounts(tenantId)`` / ``syncBankFeed(accountId, afterSequence)``: the next batch of
  the account's feed after ``afterSequence`` (at most its ``batchSize``), recorded in the
  ledger; a batch that does not start right after the last synced one is recorded as a gap or
  an overlap
- ``recordPayment(input)``: a payment against an invoice (``paid`` once fully paid)
- ``generateInvoice(input)``: the invoice-due event route's call (the events a job covers)

Each mutation is applied at most once per ``Idempotency-Key`` (a repeat gets the first answer);
the state says how often each was asked and applied. Control endpoints (JSON):

- ``POST /_control/seed`` ``{"tenants": [{"id", "timeZone", ...}], "customers": [{"id",
  "tenantId", "monthlyAmount", "active"}], "invoices": [...], "deadlines": [{"id", "tenantId",
  "submissionType", "dueDate"}], "bankAccounts": [{"id", "tenantId", "feed": <entries>,
  "batchSize"}]}``: adds, or changes what is seeded again (a tenant's zone or times, say; an
  account's feed grows to ``feed`` entries)
- ``GET /_control/state``: tenants, invoices (with reminders, payments), deadlines (alerts),
  bank ledgers and problems, payments, per mutation and key how often asked and applied
- ``POST /_control/fail``, ``DELETE /_control/fail``, ``POST /_control/delay``: as the
  development API's

Run it: ``python -m cronbus.clients.devstack.billing_api --port 8002``.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from ariadne import MutationType, QueryType
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from cronbus.clients.devstack.dev_api import (
    ApiProcess,
    FailSwitch,
    graphql_app,
    serve,
)

SCHEMA = """
scalar JSON

type Query {
  tenants(first: Int = 100, after: String): TenantPage!
  tenant(id: ID!): Tenant
  customers(tenantId: ID!): [Customer!]!
  invoices(tenantId: ID!, month: String, unpaidOnly: Boolean = false): [Invoice!]!
  sarsDeadlines(tenantId: ID!): [SarsDeadline!]!
  bankAccounts(tenantId: ID!): [BankAccount!]!
}

type Mutation {
  generateInvoices(tenantId: ID!, month: String!, issuedOn: String!): Generated!
  sendReminder(invoiceId: ID!, step: String!, sentOn: String!): ReminderSent!
  sendSarsAlert(deadlineId: ID!, daysBefore: Int!, daysUntilDeadline: Int!): AlertSent!
  syncBankFeed(accountId: ID!, afterSequence: Int!): SyncedBatch!
  recordPayment(input: PaymentInput!): PaymentRecorded!
  generateInvoice(input: GenerateInvoiceInput!): JobResult!
}

input PaymentInput {
  tenantId: ID!
  provider: String!
  providerEventId: String!
  invoiceId: ID!
  amount: Float!
  currency: String!
  paidAt: String!
}

input GenerateInvoiceInput {
  tenantId: String!
  jobId: String!
  eventIds: [String!]!
  eventCount: Int!
}

type JobResult { jobId: String! tenantId: String! applied: Boolean! }

type TenantPage { nodes: [Tenant!]! endCursor: String }

type Tenant {
  id: ID!
  name: String!
  timeZone: String!
  invoiceDay: Int!
  invoiceHour: Int!
  reminderHour: Int!
  sarsAlertHour: Int!
  sarsAlertDays: JSON!
  bankSyncHours: Int!
  paymentTermsDays: Int!
}

type Customer { id: ID! tenantId: ID! name: String! monthlyAmount: Float! active: Boolean! }

type Reminder { step: String! sentOn: String! }

type Invoice {
  id: ID!
  tenantId: ID!
  customerId: ID!
  month: String!
  amount: Float!
  amountPaid: Float!
  dueDate: String!
  status: String!
  reminders: [Reminder!]!
}

type Generated { month: String! created: [Invoice!]! existing: Int! }

type ReminderSent { invoice: Invoice! sent: Boolean! }

type SarsDeadline {
  id: ID!
  tenantId: ID!
  submissionType: String!
  dueDate: String!
  alertsSent: [Int!]!
}

type AlertSent { deadline: SarsDeadline! sent: Boolean! }

type BankAccount { id: ID! tenantId: ID! lastSyncedSequence: Int! feedLength: Int! }

type SyncedBatch { accountId: ID! fromSequence: Int! toSequence: Int! count: Int! }

type PaymentRecorded { invoice: Invoice applied: Boolean! }
"""

TENANT_DEFAULTS: dict[str, Any] = {
    "name": "", "timeZone": "Africa/Johannesburg", "invoiceDay": 1, "invoiceHour": 6,
    "reminderHour": 9, "sarsAlertHour": 8,
    "sarsAlertDays": {"VAT201": [7, 3, 1], "EMP201": [7, 3, 1], "IRP5": [7, 3, 1]},
    "bankSyncHours": 4, "paymentTermsDays": 7,
}


@dataclass
class BillingState:
    tenants: dict[str, dict[str, Any]] = field(default_factory=dict)
    customers: dict[str, dict[str, Any]] = field(default_factory=dict)
    invoices: dict[str, dict[str, Any]] = field(default_factory=dict)
    deadlines: dict[str, dict[str, Any]] = field(default_factory=dict)
    accounts: dict[str, dict[str, Any]] = field(default_factory=dict)
    payments: list[dict[str, Any]] = field(default_factory=list)
    covered: list[dict[str, Any]] = field(default_factory=list)  # generateInvoice (events)
    answers: dict[str, Any] = field(default_factory=dict)  # Idempotency-Key -> first answer
    asked: Counter[str] = field(default_factory=Counter)  # per mutation
    applied: Counter[str] = field(default_factory=Counter)  # per mutation: keys applied
    keys_asked: Counter[str] = field(default_factory=Counter)  # per Idempotency-Key
    refused: Counter[str] = field(default_factory=Counter)  # duplicates the state refused
    failing: FailSwitch = field(default_factory=FailSwitch)
    delay_s: float = 0.0


def create_billing_api() -> Starlette:
    state = BillingState()
    query, mutation = QueryType(), MutationType()

    def invoice_view(invoice: dict[str, Any]) -> dict[str, Any]:
        return {**invoice, "reminders": list(invoice["reminders"])}

    @query.field("tenants")
    def tenants(*_: Any, first: int = 100, after: str | None = None) -> dict[str, Any]:
        ids = sorted(state.tenants)
        start = ids.index(after) + 1 if after in state.tenants else 0
        page = ids[start:start + max(1, min(first, 500))]
        return {"nodes": [state.tenants[i] for i in page],
                "endCursor": page[-1] if start + len(page) < len(ids) else None}

    @query.field("tenant")
    def tenant(*_: Any, id: str) -> dict[str, Any] | None:
        return state.tenants.get(id)

    @query.field("customers")
    def customers(*_: Any, tenantId: str) -> list[dict[str, Any]]:
        return [c for c in state.customers.values() if c["tenantId"] == tenantId]

    @query.field("invoices")
    def invoices(*_: Any, tenantId: str, month: str | None = None,
                 unpaidOnly: bool = False) -> list[dict[str, Any]]:
        return [invoice_view(i) for i in state.invoices.values()
                if i["tenantId"] == tenantId and (month is None or i["month"] == month)
                and not (unpaidOnly and i["status"] == "paid")]

    def deadline_view(deadline: dict[str, Any]) -> dict[str, Any]:
        return {**deadline, "alertsSent": [a["daysBefore"] for a in deadline["alerts"]]}

    @query.field("sarsDeadlines")
    def deadlines(*_: Any, tenantId: str) -> list[dict[str, Any]]:
        return [deadline_view(d) for d in state.deadlines.values() if d["tenantId"] == tenantId]

    def account_view(account: dict[str, Any]) -> dict[str, Any]:
        return {"id": account["id"], "tenantId": account["tenantId"],
                "lastSyncedSequence": account["lastSynced"], "feedLength": account["feed"]}

    @query.field("bankAccounts")
    def accounts(*_: Any, tenantId: str) -> list[dict[str, Any]]:
        return [account_view(a) for a in state.accounts.values() if a["tenantId"] == tenantId]

    async def once(info: Any, name: str, apply: Any) -> Any:
        """``apply()``'s answer, applied once per Idempotency-Key (a repeat gets the first)."""
        key = info.context["request"].headers.get("idempotency-key")
        state.asked[name] += 1
        if state.delay_s:
            await asyncio.sleep(state.delay_s)
        if key:
            state.keys_asked[key] += 1
            if key in state.answers:
                return state.answers[key]
        answer = apply()
        state.applied[name] += 1
        if key:
            state.answers[key] = answer
        return answer

    @mutation.field("generateInvoices")
    async def generate(_: Any, info: Any, tenantId: str, month: str,
                       issuedOn: str) -> dict[str, Any]:
        def apply() -> dict[str, Any]:
            terms = state.tenants.get(tenantId, TENANT_DEFAULTS)["paymentTermsDays"]
            billed = {i["customerId"] for i in state.invoices.values()
                      if i["tenantId"] == tenantId and i["month"] == month}
            created = []
            for customer in customers(tenantId=tenantId):
                if not customer["active"] or customer["id"] in billed:
                    continue
                invoice = {"id": f"INV-{tenantId}-{month}-{customer['id']}",
                           "tenantId": tenantId, "customerId": customer["id"], "month": month,
                           "amount": customer["monthlyAmount"], "amountPaid": 0.0,
                           "dueDate": (date.fromisoformat(issuedOn)
                                       + timedelta(days=terms)).isoformat(),
                           "status": "open", "reminders": []}
                state.invoices[invoice["id"]] = invoice
                created.append(invoice_view(invoice))
            return {"month": month, "created": created, "existing": len(billed)}

        return await once(info, "generateInvoices", apply)

    @mutation.field("sendReminder")
    async def remind(_: Any, info: Any, invoiceId: str, step: str,
                     sentOn: str) -> dict[str, Any]:
        invoice = state.invoices[invoiceId]

        def apply() -> dict[str, Any]:
            if any(r["step"] == step for r in invoice["reminders"]):
                state.refused[f"reminder:{invoiceId}:{step}"] += 1
                return {"invoice": invoice_view(invoice), "sent": False}
            invoice["reminders"].append({"step": step, "sentOn": sentOn})
            return {"invoice": invoice_view(invoice), "sent": True}

        return await once(info, "sendReminder", apply)

    @mutation.field("sendSarsAlert")
    async def alert(_: Any, info: Any, deadlineId: str, daysBefore: int,
                    daysUntilDeadline: int) -> dict[str, Any]:
        deadline = state.deadlines[deadlineId]

        def apply() -> dict[str, Any]:
            sent = not any(a["daysBefore"] == daysBefore for a in deadline["alerts"])
            if sent:
                deadline["alerts"].append({"daysBefore": daysBefore,
                                           "daysUntilDeadline": daysUntilDeadline})
            else:
                state.refused[f"alert:{deadlineId}:{daysBefore}"] += 1
            return {"deadline": deadline_view(deadline), "sent": sent}

        return await once(info, "sendSarsAlert", apply)

    @mutation.field("syncBankFeed")
    async def sync(_: Any, info: Any, accountId: str, afterSequence: int) -> dict[str, Any]:
        account = state.accounts[accountId]

        def apply() -> dict[str, Any]:
            first = afterSequence + 1
            last = min(account["feed"], afterSequence + account["batchSize"])
            count = max(0, last - afterSequence)
            if afterSequence != account["lastSynced"]:
                kind = "gap" if afterSequence > account["lastSynced"] else "overlap"
                account["problems"].append({"kind": kind, "after": afterSequence,
                                            "lastSynced": account["lastSynced"]})
            if count:
                account["ledger"].append({"from": first, "to": last, "count": count})
                account["lastSynced"] = max(account["lastSynced"], last)
            return {"accountId": accountId, "fromSequence": first,
                    "toSequence": last if count else afterSequence, "count": count}

        return await once(info, "syncBankFeed", apply)

    @mutation.field("recordPayment")
    async def pay(_: Any, info: Any, input: dict[str, Any]) -> dict[str, Any]:
        def apply() -> dict[str, Any]:
            invoice = state.invoices.get(input["invoiceId"])
            state.payments.append({**input, "applied": invoice is not None})
            if invoice is None:
                return {"invoice": None, "applied": False}
            invoice["amountPaid"] = round(invoice["amountPaid"] + input["amount"], 2)
            if invoice["amountPaid"] >= invoice["amount"]:
                invoice["status"] = "paid"
            return {"invoice": invoice_view(invoice), "applied": True}

        return await once(info, "recordPayment", apply)

    @mutation.field("generateInvoice")
    async def covered(_: Any, info: Any, input: dict[str, Any]) -> dict[str, Any]:
        def apply() -> dict[str, Any]:
            state.covered.append(input)
            return {"jobId": input["jobId"], "tenantId": input["tenantId"], "applied": True}

        return await once(info, "generateInvoice", apply)


    async def seed(request: Request) -> Response:
        body = await request.json()
        for tenant_seed in body.get("tenants", []):
            known = state.tenants.get(tenant_seed["id"], {"id": tenant_seed["id"],
                                                          **TENANT_DEFAULTS})
            state.tenants[tenant_seed["id"]] = {**known, **tenant_seed}
        for customer in body.get("customers", []):
            state.customers[customer["id"]] = {"name": customer["id"], "monthlyAmount": 100.0,
                                               "active": True, **customer}
        for invoice in body.get("invoices", []):
            state.invoices[invoice["id"]] = {"amountPaid": 0.0, "status": "open",
                                             "reminders": [], **invoice}
        for deadline in body.get("deadlines", []):
            state.deadlines[deadline["id"]] = {"alerts": [], **deadline}
        for account in body.get("bankAccounts", []):
            known = state.accounts.get(account["id"], {
                "lastSynced": 0, "feed": 0, "batchSize": 10, "ledger": [], "problems": []})
            state.accounts[account["id"]] = {**known, **account}
        return JSONResponse({"tenants": len(state.tenants), "invoices": len(state.invoices)})

    async def show(_: Request) -> Response:
        return JSONResponse({
            "tenants": state.tenants,
            "invoices": state.invoices,
            "deadlines": state.deadlines,
            "accounts": state.accounts,
            "payments": state.payments,
            "covered": state.covered,
            "asked": dict(state.asked),
            "applied": dict(state.applied),
            "keys": dict(state.keys_asked),
            "refused": dict(state.refused),
        })

    return graphql_app(SCHEMA, query, mutation, state, seed=seed, show=show)


class BillingApi(ApiProcess):
    """The billing API in a child process of its own, on a free port."""

    name = "billing-api"
    module = "cronbus.clients.devstack.billing_api"


if __name__ == "__main__":
    serve(create_billing_api(), description="the billing API of the billing and compliance "
                                            "design", port=8002)
