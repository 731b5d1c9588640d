"""What each job type does downstream: its service and GraphQL operation. New types are one
declaration here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from streams.jobs import Job
from streams.topics import JobType

GENERATE_INVOICE = """
mutation GenerateInvoice($input: GenerateInvoiceInput!) {
  generateInvoice(input: $input) { jobId tenantId applied }
}
"""


@dataclass(frozen=True)
class JobCall:
    """How a job type calls downstream."""

    job_type: JobType
    operation: str
    variables: Callable[[Job], dict[str, Any]]
    service: str = "api"


def _invoice_variables(job: Job) -> dict[str, Any]:
    covers = job.covers
    return {"input": {
        "tenantId": job.tenant_id,
        "jobId": job.job_id,
        "eventIds": covers.event_ids if covers else [],
        "eventCount": covers.count if covers else 0,
    }}


RUN_JOB = """
mutation RunJob($input: RunJobInput!) {
  runJob(input: $input) { jobId tenantId applied }
}
"""


def _job_variables(job: Job) -> dict[str, Any]:
    payload = dict(job.payload)
    if job.covers:
        payload["covers"] = job.covers.model_dump(mode="json")
    return {"input": {
        "tenantId": job.tenant_id, "jobId": job.job_id, "type": job.type.value, "payload": payload,
    }}


JOB_CALLS: dict[JobType, JobCall] = {
    job_type: JobCall(job_type, RUN_JOB, _job_variables) for job_type in JobType
} | {
    JobType.INVOICE_GENERATION: JobCall(
        JobType.INVOICE_GENERATION, GENERATE_INVOICE, _invoice_variables
    ),
}
