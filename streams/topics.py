"""The topic catalog: every topic name cronbus uses is spelled here and nowhere else."""

from __future__ import annotations

from enum import StrEnum
from typing import Final

# domain events
WORLD_TIME_ADVANCED: Final = "world-time-advanced"
ENTITY_MODIFIED: Final = "entity-modified"
INVOICE_DUE: Final = "invoice-due"
EXPORT_REQUESTED: Final = "export-requested"
EVENT_TOPICS: tuple[str, ...] = (WORLD_TIME_ADVANCED, ENTITY_MODIFIED, INVOICE_DUE, EXPORT_REQUESTED)

# time
CRON_TICKS: Final = "cron-ticks"
SCHEDULES: Final = "schedules"  # compacted

# bad input, kept with the reason in headers
EVENTS_INVALID: Final = "events.invalid"

JOB_TOPIC_PREFIX = "jobs."
DEAD_LETTER_SUFFIX = ".dead-letter"


class JobType(StrEnum):
    """Every kind of job cronbus runs; each has its own topic ``jobs.<type>``."""

    INVOICE_GENERATION = "invoice-generation"
    PAYMENT_REMINDER = "payment-reminder"
    SARS_DEADLINE = "sars-deadline"
    BANK_SYNC = "bank-sync"
    DEFERRED_EFFECT = "deferred-effect"
    EVENT_EXPIRATION = "event-expiration"
    SETTLEMENT_GROWTH = "settlement-growth"
    STRUCTURE_MAINTENANCE = "structure-maintenance"
    EXPORT = "export"
    # a built-in schedule's cleanup of one kind of data past its retention (payload: dataset, days)
    RETENTION_CLEANUP = "retention-cleanup"


def job_topic(job_type: JobType | str) -> str:
    return f"{JOB_TOPIC_PREFIX}{JobType(job_type).value}"


def processor_group(app_id: str, job_type: JobType | str) -> str:
    """The consumer group of a job type's processors (each job type has its own)."""
    return f"{app_id}.{JobType(job_type).value}"


def retry_topic(of_job_topic: str, delay_s: float) -> str:
    """The retry tier of a job topic, e.g. ``jobs.export.retry.4s``."""
    return f"{of_job_topic}.retry.{delay_s:g}s"


def dead_letter_topic(of_job_topic: str) -> str:
    return f"{of_job_topic}{DEAD_LETTER_SUFFIX}"


def job_type_of(topic: str) -> JobType:
    """The job type a job topic (or its retry or dead-letter topic) belongs to."""
    if not topic.startswith(JOB_TOPIC_PREFIX):
        raise ValueError(f"{topic!r} is not a job topic")
    name = topic.removeprefix(JOB_TOPIC_PREFIX).split(".", 1)[0]
    return JobType(name)


def all_topics() -> list[str]:
    """Every fixed topic, for declaring them on a fresh cluster."""
    jobs = [job_topic(t) for t in JobType]
    return [*EVENT_TOPICS, CRON_TICKS, SCHEDULES, EVENTS_INVALID,
            *jobs, *(dead_letter_topic(t) for t in jobs)]



# state: compacted, one per app (consumer group), so two apps on one cluster never share it


def debounce_windows_topic(app_id: str) -> str:
    """Ingest's open windows, one record per tenant; partition p holds those of partition p."""
    return f"{app_id}-debounce-windows"


def state_topics(app_id: str) -> list[str]:
    return [debounce_windows_topic(app_id)]


def catalog(app_id: str) -> list[str]:
    """Every topic a worker of ``app_id`` needs from its start: the fixed ones and its state."""
    return [*all_topics(), *state_topics(app_id)]


def compacted(app_id: str) -> frozenset[str]:
    """The topics of :func:`catalog` that keep only each key's last record."""
    return COMPACTED | set(state_topics(app_id))


COMPACTED: frozenset[str] = frozenset({SCHEDULES})
