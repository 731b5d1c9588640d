"""Topic names: every topic name of cronbus itself and of its own families is spelled here and
nowhere else; a job type's topics are made from its name (job types and event types, a
deployment's own among them, are declared in :mod:`cronbus.streams.catalog`)."""

from __future__ import annotations

import re
from typing import Final

# domain events
WORLD_TIME_ADVANCED: Final = "world-time-advanced"
ENTITY_MODIFIED: Final = "entity-modified"
INVOICE_DUE: Final = "invoice-due"
EXPORT_REQUESTED: Final = "export-requested"
PAYMENT_WEBHOOK_RECEIVED: Final = "payment-webhook-received"  # the billing family's

# time
CRON_TICKS: Final = "cron-ticks"
SCHEDULES: Final = "schedules"  # compacted

# bad input, kept with the reason in headers
EVENTS_INVALID: Final = "events.invalid"

JOB_TOPIC_PREFIX = "jobs."
# a job type's name is the suffix of its topics (jobs.<name>, jobs.<name>.retry.4s, ...)
JOB_TYPE_NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
DEAD_LETTER_SUFFIX = ".dead-letter"


def job_topic(job_type: str) -> str:
    """A job type's topic, ``jobs.<type>`` (the job types are declared in the catalog)."""
    return f"{JOB_TOPIC_PREFIX}{job_type}"


def processor_group(app_id: str, job_type: str) -> str:
    """The consumer group of a job type's processors (each job type has its own)."""
    return f"{app_id}.{job_type}"


def retry_topic(of_job_topic: str, delay_s: float) -> str:
    """The retry tier of a job topic, e.g. ``jobs.export.retry.4s``."""
    return f"{of_job_topic}.retry.{delay_s:g}s"


def rate_limited_topic(of_job_topic: str) -> str:
    """Where a job over its type's rate limit waits for its window, on the retry path, e.g.
    ``jobs.email.retry.rate-limited`` (its due time and unchanged attempts in headers)."""
    return f"{of_job_topic}.retry.rate-limited"


def dead_letter_topic(of_job_topic: str) -> str:
    return f"{of_job_topic}{DEAD_LETTER_SUFFIX}"


def job_type_of(topic: str) -> str:
    """The job type a job topic (or its retry or dead-letter topic) belongs to."""
    name = topic.removeprefix(JOB_TOPIC_PREFIX).split(".", 1)[0]
    if not topic.startswith(JOB_TOPIC_PREFIX) or not re.match(JOB_TYPE_NAME_PATTERN, name):
        raise ValueError(f"{topic!r} is not a job topic")
    return name


# state: compacted, one per app (consumer group), so two apps on one cluster never share it


def debounce_windows_topic(app_id: str) -> str:
    """Ingest's open windows, one record per tenant; partition p holds those of partition p."""
    return f"{app_id}-debounce-windows"


def world_clocks_topic(app_id: str) -> str:
    """Each tenant's world clock, one record per tenant on the tenant's partition."""
    return f"{app_id}-world-clocks"


def state_topics(app_id: str) -> list[str]:
    return [debounce_windows_topic(app_id), world_clocks_topic(app_id)]


def compacted(app_id: str) -> frozenset[str]:
    """The topics of a worker of ``app_id`` that keep only each key's last record."""
    return COMPACTED | set(state_topics(app_id))


COMPACTED: frozenset[str] = frozenset({SCHEDULES})
