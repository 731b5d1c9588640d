"""What each job type does downstream. A job type is one :class:`JobSpec`: one call (a GraphQL
operation or a REST request, and how the answer maps to success) or a handler of several steps
(:mod:`cronbus.agents.processing.handlers`), and optionally its own retry policy and per-tenant
ordering. New types are one declaration in :data:`JOB_SPECS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cronbus.agents.processing.handlers import Handler
from cronbus.agents.processing.retry_policy import RetryPolicy
from cronbus.agents.processing.world import execute_deferred_effect, expire_overdue_events
from cronbus.streams.jobs import Job
from cronbus.streams.topics import JobType


def _always(_: Any) -> bool:
    return True


@dataclass(frozen=True)
class GraphQLCall:
    """A GraphQL operation on the service's endpoint; ``succeeded`` judges the answer's data."""

    operation: str
    variables: Callable[[Job], dict[str, Any]]
    succeeded: Callable[[dict[str, Any]], bool] = _always


@dataclass(frozen=True)
class RestCall:
    """A REST request; ``path`` is relative to the service URL. Any 2xx answer whose decoded
    body ``succeeded`` accepts is a success."""

    method: str
    path: Callable[[Job], str]
    body: Callable[[Job], Any] = lambda job: None
    succeeded: Callable[[Any], bool] = _always


@dataclass(frozen=True)
class JobSpec:
    """How a job type runs.

    ``retry`` overrides the retry policy from the settings; ``ordered`` runs one tenant's jobs
    of this type one at a time in record order (a failing job then retries in place and
    holds the tenant's later jobs back, instead of going through the retry topics).
    """

    job_type: JobType
    call: GraphQLCall | RestCall | None = None
    handler: Handler | None = None
    service: str = "api"
    retry: RetryPolicy | None = None
    ordered: bool = False

    def __post_init__(self) -> None:
        if (self.call is None) == (self.handler is None):
            raise ValueError(f"job type {self.job_type}: declare a call or a handler, one of them")


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


def _run_job(job_type: JobType, **options: Any) -> JobSpec:
    return JobSpec(job_type, GraphQLCall(RUN_JOB, _job_variables), **options)


# every job type runs the generic RunJob mutation unless it is declared otherwise below
JOB_SPECS: dict[JobType, JobSpec] = {t: _run_job(t) for t in JobType} | {
    JobType.INVOICE_GENERATION: JobSpec(
        JobType.INVOICE_GENERATION, GraphQLCall(GENERATE_INVOICE, _invoice_variables)
    ),
    # a bank's ledger must see one tenant's syncs in order
    JobType.BANK_SYNC: _run_job(JobType.BANK_SYNC, ordered=True),
    # the world-time family: handlers against the world API
    JobType.EVENT_EXPIRATION: JobSpec(JobType.EVENT_EXPIRATION, handler=expire_overdue_events,
                                      service="world"),
    JobType.DEFERRED_EFFECT: JobSpec(JobType.DEFERRED_EFFECT, handler=execute_deferred_effect,
                                     service="world"),
}
