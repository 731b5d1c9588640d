"""The console (agents/console) wired to what it shows: the job status store and its index in
Redis, the dead-letter topics read and replayed as ``cronbus dlq`` does (agents/processing), and
the queues. Composed here because a role never imports another role."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import faust
import redis.asyncio as aioredis
from aiokafka import ConsumerRecord, TopicPartition
from redis.exceptions import RedisError

from cronbus.agents.console.api import SAMPLE_S, ConsoleApi
from cronbus.agents.console.rules import LetterQuery, letter_ref
from cronbus.agents.processing.dead_letters import DeadLetter, DeadLetterFilter
from cronbus.agents.processing.queues import queue_stats
from cronbus.agents.processing.replay import dead_letter_topics, replay
from cronbus.agents.worker.registry import Resources
from cronbus.clients.kafka import connect
from cronbus.clients.redis.api_tokens import api_gate
from cronbus.clients.redis.job_index import JobIndex
from cronbus.streams import topics
from cronbus.streams.topics import job_type_of

log = logging.getLogger(__name__)


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


class RecordShelf:
    """One record read back from its topic by its place (``topic/partition/offset``)."""

    def __init__(self, resources: Resources) -> None:
        self.brokers = resources.settings.kafka

    async def read(self, where: str) -> ConsumerRecord | None:
        topic, partition, offset = letter_ref(where)
        consumer = connect.reader(self.brokers, fetch_max_wait_ms=50)
        await consumer.start()
        try:
            tp = TopicPartition(topic, partition)
            consumer.assign([tp])
            consumer.seek(tp, offset)
            deadline = asyncio.get_running_loop().time() + READ_TIMEOUT_S
            while asyncio.get_running_loop().time() < deadline:
                batch = await consumer.getmany(tp, timeout_ms=200, max_records=1)
                for record in batch.get(tp, []):
                    return record if record.offset == offset else None
                if await consumer.position(tp) > offset:
                    return None  # compacted or deleted past it
            return None
        finally:
            await consumer.stop()


# a job's page waits this long for its record (a broker away: the status shows without it)
READ_TIMEOUT_S = 3.0


async def breaker_states(redis: aioredis.Redis, namespace: str, services: Sequence[str]
                         ) -> dict[str, str | None]:
    """Each service's circuit as the workers share it (clients/redis/breaker_storage.py)."""
    if not services:
        return {}
    keys = [f"{namespace}:breaker:{s}:pybreaker:state" for s in services]
    return {s: v.decode() if v else None
            for s, v in zip(services, await redis.mget(keys), strict=True)}


def console_api(app: faust.App, resources: Resources, *, serve_page: bool) -> ConsoleApi:
    """The console's API: the status pages on every worker, and with ``serve_page`` (the api
    role) the page at /ui and the routes only it uses."""
    settings = resources.settings
    catalog = resources.catalog

    async def stats(job_types: Sequence[str]) -> list[dict[str, Any]]:
        return await queue_stats(settings.kafka, settings.app_id, resources.status, job_types)

    async def breakers(services: Sequence[str]) -> dict[str, str | None]:
        return await breaker_states(resources.redis, settings.redis_namespace, services)

    def paused_topics(job_type: str) -> list[str]:
        return topics.tier_topics(job_type, ordered=catalog[job_type].ordered)

    api = ConsoleApi(
        tokens=api_gate(resources.redis, settings),
        system_tenant=settings.system_tenant,
        services={name: catalog[name].service for name in catalog.names},
        status=resources.status,
        index=JobIndex(resources.redis, resources.status, namespace=settings.redis_namespace),
        letters=DeadLetterShelf(resources), queue_stats=stats, breakers=breakers,
        read_record=RecordShelf(resources).read, paused_topics=paused_topics,
        stopping=lambda: bool(app.should_stop),
    )
    if serve_page:
        api.register(app)
        # the throughput rings need a sample a minute; every SAMPLE_S keeps a gap from costing one
        app.timer(SAMPLE_S)(_sampler(api))
    return api


def _sampler(api: ConsoleApi) -> Callable[[], Awaitable[None]]:
    async def sample_throughput() -> None:
        try:
            await api.sample()
        except RedisError as exc:  # Redis away: a minute without a figure, said by the health page
            log.debug("console: throughput not sampled: %s", exc)

    return sample_throughput
