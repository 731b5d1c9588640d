"""Queues as a BullMQ user knows them, one per job topic: waiting, active, completed, failed,
dead-lettered; and "retry failed jobs", which is replaying the topic's dead letters.

waiting is the processors' consumer-group lag on the job topics, each priority tier's and their
sum (Kafka); the rest are the
counters JobStatusStore keeps in Redis as attempts end.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from cronbus.agents.processing.dead_letters import DeadLetterFilter
from cronbus.agents.processing.replay import ReplayResult, dead_letter_topics, find_dead_letters, replay
from cronbus.clients.kafka.connect import Brokers
from cronbus.clients.kafka.records import group_lag
from cronbus.clients.redis.job_status import JobStatusStore
from cronbus.streams import topics
from cronbus.streams.priorities import TIERS


async def queue_stats(brokers: Brokers, group_id: str, store: JobStatusStore,
                      job_types: Sequence[str]) -> list[dict[str, Any]]:
    chosen = list(job_types)
    # each job type's processors consume in a group of their own (agents/processing/engine.py);
    # waiting counts every priority tier's topic (one an ordered type has not counts 0)
    async def waiting_of(job_type: str) -> dict[str, int]:
        tiers = {tier: topics.tier_topic(job_type, tier) for tier in TIERS}
        lag = await group_lag(brokers, topics.processor_group(group_id, job_type),
                              list(tiers.values()))
        return {tier.value: lag[topic] for tier, topic in tiers.items()}

    # every job type's groups asked at once: one after another, a page of them took seconds
    waiting = dict(zip(chosen, await asyncio.gather(*(waiting_of(t) for t in chosen)),
                       strict=True))
    counts = await store.queue_counts(chosen)
    return [{"job_type": t, "topic": topics.job_topic(t), "waiting": sum(waiting[t].values()),
             "waiting_by_tier": waiting[t], **counts[t]} for t in chosen]


async def retry_failed(brokers: Brokers, job_type: str, *, tenant_id: str | None = None,
                       dry_run: bool = False, force: bool = False) -> ReplayResult:
    """Replay the dead letters of one job type (one tenant's, when given) to its job topic."""
    letters = await find_dead_letters(brokers, dead_letter_topics([job_type]),
                                      DeadLetterFilter(tenant_id=tenant_id))
    return await replay(brokers, letters, dry_run=dry_run, force=force)
