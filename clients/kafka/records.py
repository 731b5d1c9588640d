"""Reading a topic's records as they are and sending records back, with raw aiokafka.

A read takes every partition of a topic from its beginning to its end (read until a fetch
comes back empty), with no consumer group: nothing is committed, so listing and replaying never
move anyone's offsets.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Sequence

from aiokafka import ConsumerRecord, TopicPartition

from cronbus.clients.kafka import connect

log = logging.getLogger(__name__)


async def read_to_end(brokers: connect.Brokers, topic: str) -> AsyncIterator[ConsumerRecord]:
    """Every record of ``topic`` from its beginning to its end; none if the topic does not
    exist."""
    async for record in read_all_to_end(brokers, [topic]):
        yield record


async def read_all_to_end(brokers: connect.Brokers, topic_names: Iterable[str]
                          ) -> AsyncIterator[ConsumerRecord]:
    """Every record of each of ``topic_names`` from its beginning to its end, in one consumer
    (one start, one metadata read and fetches of every partition together: a consumer a topic
    cost most of a second each); a topic that does not exist has none."""
    consumer = connect.reader(brokers)
    await consumer.start()
    try:
        await consumer.topics()  # fresh metadata of every topic; creates none
        assigned: list[TopicPartition] = []
        for topic in dict.fromkeys(topic_names):
            partitions = consumer.partitions_for_topic(topic)
            if not partitions:
                log.debug("topic %s does not exist (yet): nothing to read", topic)
                continue
            assigned += [TopicPartition(topic, p) for p in sorted(partitions)]
        if not assigned:
            return
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        async for records in connect.to_end(consumer, assigned, timeout_ms=500):
            for record in records:
                yield record
    finally:
        await consumer.stop()


Outgoing = tuple[str, bytes | None, bytes | None, list[tuple[str, bytes]]]
"""A record to send: topic, key, value, headers."""
Sent = Callable[[int], None]


async def send_records(brokers: connect.Brokers, records: Iterable[Outgoing], *,
                       on_sent: Sent | None = None, window: int = 500) -> int:
    """Send each record as given and wait for every delivery (acks=all). ``on_sent`` hears the
    running count. Returns how many were sent."""
    producer = connect.producer(brokers)
    await producer.start()
    done = 0
    try:
        inflight: list[asyncio.Future] = []
        for topic, key, value, record_headers in records:
            inflight.append(await producer.send(topic, key=key, value=value,
                                                headers=record_headers))
            if len(inflight) >= window:
                done += await _settle(inflight, done, on_sent)
                inflight = []
        done += await _settle(inflight, done, on_sent)
    finally:
        await producer.stop()
    return done


async def _settle(inflight: list[asyncio.Future], done: int, on_sent: Sent | None) -> int:
    for n, future in enumerate(inflight, 1):
        await future
        if on_sent is not None:
            on_sent(done + n)
    return len(inflight)


async def group_lag(brokers: connect.Brokers, group_id: str, topic_names: Sequence[str]
                    ) -> dict[str, int]:
    """Per topic: records the consumer group has not committed yet (end offset minus committed
    offset, or minus the beginning where it committed nothing). A topic that does not exist
    counts 0."""
    admin = connect.admin(brokers)
    consumer = connect.reader(brokers)
    await admin.start()
    await consumer.start()
    try:
        await consumer.topics()
        partitions = [TopicPartition(t, p) for t in topic_names
                      for p in sorted(consumer.partitions_for_topic(t) or ())]
        lag = dict.fromkeys(topic_names, 0)
        if not partitions:
            return lag
        committed = await admin.list_consumer_group_offsets(group_id, partitions=partitions)
        ends = await consumer.end_offsets(partitions)
        starts = await consumer.beginning_offsets(partitions)
        for tp in partitions:
            done = committed.get(tp)
            offset = done.offset if done is not None and done.offset >= 0 else starts[tp]
            lag[tp.topic] += max(0, ends[tp] - offset)
        return lag
    finally:
        await consumer.stop()
        await admin.close()
