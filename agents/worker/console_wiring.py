"""The console (agents/console) wired to what it shows: the job status store and its index in
Redis, the dead-letter topics read and replayed as ``cronbus dlq`` does (agents/processing), and
the queues. Composed here because a role never imports another role."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import faust
from aiokafka import TopicPartition

from cronbus.agents.console.api import ConsoleApi
from cronbus.agents.console.rules import LetterQuery
from cronbus.agents.processing.dead_letters import DeadLetter, DeadLetterFilter
from cronbus.agents.processing.queues import queue_stats
from cronbus.agents.processing.replay import dead_letter_topics, replay
from cronbus.agents.worker.registry import Resources
from cronbus.clients.kafka import connect
from cronbus.clients.redis.api_tokens import api_gate
from cronbus.clients.redis.job_index import JobIndex
from cronbus.streams.topics import job_type_of


class DeadLetterShelf:
    """Every dead-letter topic read to its end in one consumer (no group), filtered."""

    def __init__(self, resources: Resources) -> None:
        self.resources = resources
        self.brokers = resources.settings.kafka  # servers, SASL and TLS

    async def find(self, query: LetterQuery) -> list[DeadLetter]:
        rule = DeadLetterFilter(tenant_id=query.tenant_id, error_type=query.error_type,
                                since=query.since, until=query.until)
        job_types = [query.job_type] if query.job_type else self.resources.catalog.names
        found = []
        consumer = connect.reader(self.brokers, fetch_max_wait_ms=50)
        await consumer.start()
        try:
            await consumer.topics()  # fresh metadata; creates nothing
            assigned = [TopicPartition(topic, p) for topic in dead_letter_topics(job_types)
                        for p in sorted(consumer.partitions_for_topic(topic) or ())]
            if not assigned:
                return []
            consumer.assign(assigned)
            await consumer.seek_to_beginning(*assigned)
            async for records in connect.to_end(consumer, assigned, timeout_ms=100):
                for r in records:
                    letter = DeadLetter.from_record(r.topic, r.partition, r.offset, r.timestamp,
                                                    r.key, r.value, r.headers)
                    if rule.matches(letter):
                        found.append(letter)
        finally:
            await consumer.stop()
        found.sort(key=lambda x: (x.timestamp_ms, x.topic, x.partition, x.offset))
        return found

    async def replay(self, letters: Sequence[DeadLetter], *, force: bool, dry_run: bool
                     ) -> dict[str, Any]:
        result = await replay(self.brokers, letters, force=force, dry_run=dry_run)
        if not dry_run:
            for topic, sent in result.to_topics.items():
                self.resources.metrics.dead_letters_replayed.labels(job_type_of(topic)).inc(sent)
        return result.as_dict()


def console_api(app: faust.App, resources: Resources) -> ConsoleApi:
    """The console's API and page, registered on the worker's web server."""
    settings = resources.settings

    async def stats(job_types: Sequence[str]) -> list[dict[str, Any]]:
        return await queue_stats(settings.kafka, settings.app_id, resources.status, job_types)

    api = ConsoleApi(
        tokens=api_gate(resources.redis, settings),
        system_tenant=settings.system_tenant, job_types=resources.catalog.names,
        status=resources.status,
        index=JobIndex(resources.redis, resources.status, namespace=settings.redis_namespace),
        letters=DeadLetterShelf(resources), queue_stats=stats,
        stopping=lambda: bool(app.should_stop),
    )
    api.register(app)
    return api
