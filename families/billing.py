"""Billing and compliance (the source's SARS/billing/bank-sync design): invoices issued for a
billing month, payment reminders, SARS submission deadlines and bank syncs, with their payloads."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from cronbus.families.generic import RUN
from cronbus.streams import topics
from cronbus.streams.catalog import EventType, GraphQLCall, JobType, by_field
from cronbus.streams.events import Identifier, InvoiceDue
from cronbus.streams.jobs import Job


class InvoiceGeneration(BaseModel):
    """A scheduled run names its month; one started by invoice-due events covers those."""

    model_config = ConfigDict(frozen=True)

    billing_month: Annotated[str, StringConstraints(pattern=r"^\d{4}-(0[1-9]|1[0-2])$")] | None = (
        Field(default=None, description="YYYY-MM"))
    dry_run: bool = False


class PaymentReminder(BaseModel):
    model_config = ConfigDict(frozen=True)

    reminder_type: Literal["gentle", "second", "final", "escalation"] = "gentle"
    invoice_ids: list[Identifier] = Field(default_factory=list)


class SarsDeadline(BaseModel):
    model_config = ConfigDict(frozen=True)

    submission_type: Literal["VAT201", "EMP201", "IRP5"]
    days_until_deadline: int = Field(ge=0, le=366)


GENERATE_INVOICE = """
mutation GenerateInvoice($input: GenerateInvoiceInput!) {
  generateInvoice(input: $input) { jobId tenantId applied }
}
"""


def _invoice_variables(job: Job) -> dict[str, Any]:
    covers = job.covers
    return {"input": {
        "tenantId": job.tenant_id,
        "jobId": job.job_id,
        "eventIds": covers.event_ids if covers else [],
        "eventCount": covers.count if covers else 0,
    }}


JOB_TYPES = [
    # billing waits for a burst of invoice-due events to end
    JobType("invoice-generation", GraphQLCall(GENERATE_INVOICE, _invoice_variables),
            payload=InvoiceGeneration, debounce="trailing"),
    JobType("payment-reminder", RUN, payload=PaymentReminder, debounce="trailing"),
    JobType("sars-deadline", RUN, payload=SarsDeadline),
    # a bank's ledger must see one tenant's syncs in order
    JobType("bank-sync", RUN, ordered=True),
]

EVENT_TYPES = [
    EventType(topics.INVOICE_DUE, InvoiceDue, by_field("stage", {
        "generate": "invoice-generation", "remind": "payment-reminder"})),
]
