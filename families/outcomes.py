"""Outcome notifications' delivery: ``outcome-webhook`` POSTs a job's outcome notice (made by the
processor from the job's ``notify``, see :mod:`cronbus.agents.processing.outcome_notices`) to the
URL the job asked for, signed with the tenant's secret (:mod:`cronbus.streams.outcomes`).

It calls the job's own URL, not its declared service: each tenant's receiver is its own, so a
receiver that is down fails its own notices (retried, then dead-lettered) and never opens a
circuit that would pause other tenants' deliveries. A 2xx answer is delivery; 408, 429, 5xx and
network errors are tried again; another 4xx is the receiver refusing: given up at once.
Without ``CRONBUS_WEBHOOK_SIGNING_KEY`` nothing can be signed: given up at once, named.
"""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import httpx
from pydantic import BaseModel, ConfigDict, StringConstraints

from cronbus.agents.processing.handlers import JobCannotSucceed, JobContext, TryAgainLater
from cronbus.streams.catalog import JobType
from cronbus.streams.jobs import Job
from cronbus.streams.outcomes import (
    OUTCOME_WEBHOOK,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    signature,
    tenant_secret,
)

WEBHOOK_TIMEOUT_S = 10.0
_RETRIED_STATUSES = frozenset({408, 425, 429})


class OutcomeWebhook(BaseModel):
    model_config = ConfigDict(frozen=True)

    webhook_url: Annotated[str, StringConstraints(pattern=r"^https?://\S+$")]
    notice: dict[str, Any]


def notice_body(notice: dict[str, Any]) -> bytes:
    """The exact bytes POSTed and signed (compact JSON, keys sorted)."""
    return json.dumps(notice, separators=(",", ":"), sort_keys=True).encode()


def signed_headers(signing_key: str, tenant_id: str, body: bytes, now: float) -> dict[str, str]:
    timestamp = int(now)
    return {"Content-Type": "application/json", "User-Agent": "cronbus",
            SIGNATURE_HEADER: signature(tenant_secret(signing_key, tenant_id), timestamp, body),
            TIMESTAMP_HEADER: str(timestamp)}


async def deliver_outcome(job: Job, ctx: JobContext) -> None:
    payload: OutcomeWebhook = ctx.payload
    service = ctx.client.service
    key = ctx.settings.webhook_signing_key
    if key is None:
        raise JobCannotSucceed("CRONBUS_WEBHOOK_SIGNING_KEY is not set: webhook notices cannot "
                               "be signed, so none is sent", service=service)
    body = notice_body(payload.notice)

    async def post() -> int:
        headers = {**signed_headers(key.get_secret_value(), job.tenant_id, body, time.time()),
                   "Idempotency-Key": job.job_id}  # the same notice, however often it is sent
        try:
            async with httpx.AsyncClient(timeout=WEBHOOK_TIMEOUT_S) as http:
                answer = await http.post(payload.webhook_url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise TryAgainLater(f"{payload.webhook_url}: {type(exc).__name__}: {exc}",
                                service=service) from None
        said = f"{payload.webhook_url} answered {answer.status_code}: {answer.text[:200]}"
        if answer.status_code in _RETRIED_STATUSES or answer.status_code >= 500:
            raise TryAgainLater(said, service=service, status=answer.status_code)
        if answer.status_code >= 300:
            raise JobCannotSucceed(said, service=service, status=answer.status_code)
        return answer.status_code

    status = await ctx.step("deliver", post)
    await ctx.result(delivered_to=payload.webhook_url, status=status)


JOB_TYPES = [
    JobType(OUTCOME_WEBHOOK, handler=deliver_outcome, payload=OutcomeWebhook,
            about="a job's outcome notice POSTed, signed, to the URL its notify names"),
]
