"""Which event fans out to which job types: one table, read top to bottom. Pure.

A rule returns the job types an event starts; an empty list means the event starts nothing
(it is counted as unrouted, not rejected: it was valid).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from cronbus.streams import topics
from cronbus.streams.events import CronTick, DomainEvent, EntityModified, InvoiceDue
from cronbus.streams.topics import JobType

Rule = Callable[[DomainEvent], list[JobType]]


def always(*job_types: JobType) -> Rule:
    return lambda event: list(job_types)


def by_entity_type(mapping: Mapping[str, JobType]) -> Rule:
    def rule(event: DomainEvent) -> list[JobType]:
        assert isinstance(event, EntityModified)
        job_type = mapping.get(event.entity_type)
        return [job_type] if job_type else []

    return rule


def by_invoice_stage(event: DomainEvent) -> list[JobType]:
    assert isinstance(event, InvoiceDue)
    return [JobType.PAYMENT_REMINDER if event.stage == "remind" else JobType.INVOICE_GENERATION]


def named_by_schedule(event: DomainEvent) -> list[JobType]:
    assert isinstance(event, CronTick)
    return [event.job_type]


ROUTES: dict[str, Rule] = {
    # a tenant's world clock moved: expire what ran out, apply deferred effects, and
    # recalculate settlement growth and structure upkeep for the new time
    topics.WORLD_TIME_ADVANCED: always(
        JobType.EVENT_EXPIRATION, JobType.DEFERRED_EFFECT,
        JobType.SETTLEMENT_GROWTH, JobType.STRUCTURE_MAINTENANCE,
    ),
    topics.ENTITY_MODIFIED: by_entity_type({
        "settlement": JobType.SETTLEMENT_GROWTH,
        "structure": JobType.STRUCTURE_MAINTENANCE,
    }),
    topics.INVOICE_DUE: by_invoice_stage,
    topics.EXPORT_REQUESTED: always(JobType.EXPORT),
    topics.CRON_TICKS: named_by_schedule,
}

INGESTED_TOPICS: tuple[str, ...] = tuple(ROUTES)


def job_types_for(topic: str, event: DomainEvent) -> list[JobType]:
    return ROUTES[topic](event)
