"""Queues as a BullMQ user knows them, one per job topic: waiting, active, completed, failed,
dead-lettered; and "retry failed jobs", which is replaying the topic's dead letters.

waiting is the processors' consumer-group lag on the job topic (Kafka); the rest are the
counters JobStatusStore keeps in Redis as attempts end.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cronbus.agents.processing.dead_letters import DeadLetterFilter
from cronbus.agents.processing.replay import ReplayResult, dead_letter_topics, find_dead_letters, replay
from cronbus.clients.kafka.connect import Brokers
from cronbus.clients.kafka.records import group_lag
from cronbus.clients.redis.job_status import JobStatusStore
from cronbus.streams import topics


async def queue_stats(brokers: Brokers, group_id: str, store: JobStatusStore,
                      job_types: Sequence[str]) -> list[dict[str, Any]]:
    chosen = list(job_types)
    job_topics = [topics.job_topic(t) for t in chosen]
    # each job type's processors consume in a group of their own (agents/processing/engine.py)
    waiting: dict[str, int] = {}
    for job_type, topic in zip(chosen, job_topics, strict=True):
        waiting.update(await group_lag(brokers, topics.processor_group(group_id, job_type), [topic]))
    counts = await store.queue_counts(chosen)
    return [{"job_type": t, "topic": topic, "waiting": waiting[topic], **counts[t]}
            for t, topic in zip(chosen, job_topics, strict=True)]


async def retry_failed(brokers: Brokers, job_type: str, *, tenant_id: str | None = None,
                       dry_run: bool = False, force: bool = False) -> ReplayResult:
    """Replay the dead letters of one job type (one tenant's, when given) to its job topic."""
    letters = await find_dead_letters(brokers, dead_letter_topics([job_type]),
                                      DeadLetterFilter(tenant_id=tenant_id))
    return await replay(brokers, letters, dry_run=dry_run, force=force)
