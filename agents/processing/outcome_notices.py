"""The notification jobs of a job's final outcome (its ``notify``). Pure: no I/O.

A job that completed, or was given up on (dead-lettered: "failed"), and asked to be told
(``notify.on``) gets one notification job per channel: ``outcome-webhook`` for its
``webhook_url``, ``email`` for its ``email``. Each one's id is derived from the reported job's
id, the outcome and the channel, so the notice of a redelivered, retried or replayed job is the
same job, run once. A notification job never carries a notify of its own.
"""

from __future__ import annotations

import logging
from collections.abc import Container, Mapping
from datetime import UTC, datetime
from typing import Any

from cronbus.streams.jobs import Job, job_id_for
from cronbus.streams.outcomes import EMAIL, EMAIL_TEMPLATE, OUTCOME_WEBHOOK, NotifyOutcome

log = logging.getLogger(__name__)

# scalars only: the email job's variables are str, int, float or bool
_SCALARS = (str, int, float, bool)


def notice(job: Job, outcome: NotifyOutcome, status: Mapping[str, Any] | None,
           *, now: float) -> dict[str, Any]:
    """What a notification says of ``job``: the webhook's JSON body."""
    status = status or {}
    finished = status.get("finished_at") or now
    schedule_id = job.payload.get("schedule_id")
    return {
        "job_id": job.job_id,
        "job_type": job.type,
        "tenant_id": job.tenant_id,
        "outcome": outcome,
        "error": status.get("last_error") if outcome == "failed" else None,
        "finished_at": datetime.fromtimestamp(float(finished), UTC).isoformat(),
        "schedule_id": schedule_id if isinstance(schedule_id, str) else None,
        "result": dict(status.get("result") or {}),
    }


def notification_ref(job: Job, outcome: str, channel: str) -> str:
    """What a notification job's id derives from: the job, its outcome and the channel."""
    return f"notify:{job.job_id}:{outcome}:{channel}"


def email_variables(said: Mapping[str, Any]) -> dict[str, str | int | float | bool]:
    """The notice as an email template's variables: scalars only (the result's fields as
    ``result_<name>``; a missing value is left out)."""
    variables: dict[str, str | int | float | bool] = {
        name: value for name, value in said.items()
        if name != "result" and isinstance(value, _SCALARS)}
    result = {name: value for name, value in (said.get("result") or {}).items()
              if isinstance(value, _SCALARS)}
    for name, value in result.items():
        variables[f"result_{name}"] = value
    # what the job-outcome template says: "<job> <outcome>. <detail>"
    variables["job"] = f"{said['job_type']} job {said['job_id']}"
    variables["detail"] = (said.get("error") or "") if said["outcome"] == "failed" else ", ".join(
        f"{name}: {value}" for name, value in result.items())
    return variables


def notification_jobs(job: Job, outcome: NotifyOutcome, status: Mapping[str, Any] | None, *,
                      declared: Container[str], now: float) -> list[Job]:
    """The notification jobs ``job``'s outcome asks for (none when it asks for none, or not for
    this outcome). A channel whose job type is not ``declared`` is skipped, logged (the API
    refuses such a schedule; a job published with one gets no notice of that channel)."""
    ask = job.notify
    if ask is None or not ask.wants(outcome):
        return []
    said = notice(job, outcome, status, now=now)
    at = datetime.fromtimestamp(now, UTC)
    wanted: list[tuple[str, dict[str, Any]]] = []
    if ask.webhook_url is not None:
        wanted.append((OUTCOME_WEBHOOK, {"webhook_url": ask.webhook_url, "notice": said}))
    if ask.email is not None:
        wanted.append((EMAIL, {"user_id": job.tenant_id, "to": ask.email,
                               "template": EMAIL_TEMPLATE, "language": "en",
                               "variables": email_variables(said)}))
    jobs = []
    for job_type, payload in wanted:
        if job_type not in declared:
            log.warning("job %s asks for a %s notice of %s, but no %s job type is declared: "
                        "not sent", job.job_id, job_type, outcome, job_type)
            continue
        jobs.append(Job(job_id=job_id_for(job.tenant_id, job_type,
                                          notification_ref(job, outcome, job_type)),
                        tenant_id=job.tenant_id, type=job_type, triggered_by="job",
                        scheduled_at=at, payload=payload))
    return jobs
