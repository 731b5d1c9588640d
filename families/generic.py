"""The generic ``runJob`` mutation, for a job type whose API takes the job as it is: its type,
tenant, payload and the events it covers."""

from __future__ import annotations

from typing import Any

from cronbus.streams.catalog import GraphQLCall
from cronbus.streams.jobs import Job

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
        "tenantId": job.tenant_id, "jobId": job.job_id, "type": job.type, "payload": payload,
    }}


RUN = GraphQLCall(RUN_JOB, _job_variables)
