"""Plain aiokafka for cronbus's hot paths: batch consumption, a producer we flush ourselves, and
reading a partition back from its start (restoring state from a changelog).

Faust's per-record stream path costs about 200 µs a record on these machines; the ingest path
reads batches with ``getmany`` and owns its commits instead (see the README's "Ingest" section).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.coordinator.assignors.abstract import AbstractPartitionAssignor
from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor

log = logging.getLogger(__name__)


def group_consumer(
    brokers: Sequence[str], *, group_id: str, topics: Sequence[str],
    listener: ConsumerRebalanceListener, session_timeout_s: float, rebalance_timeout_s: float,
    assignors: tuple[type[AbstractPartitionAssignor], ...] = (RoundRobinPartitionAssignor,),
    max_batch_bytes: int = 16 * 1024 * 1024,
) -> AIOKafkaConsumer:
    """A member of ``group_id`` reading ``topics``; offsets are committed by the caller only."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=list(brokers),
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=int(session_timeout_s * 1000),
        heartbeat_interval_ms=int(min(3.0, session_timeout_s / 3) * 1000),
        rebalance_timeout_ms=int(rebalance_timeout_s * 1000),
        max_partition_fetch_bytes=4 * 1024 * 1024,
        fetch_max_bytes=max_batch_bytes,
        partition_assignment_strategy=assignors,
    )
    consumer.subscribe(topics=list(topics), listener=listener)
    return consumer


async def unread(consumer: AIOKafkaConsumer) -> dict[TopicPartition, int]:
    """Records on the broker the consumer has not read yet, per partition it owns."""
    lags: dict[TopicPartition, int] = {}
    for tp in consumer.assignment():
        try:
            high = consumer.highwater(tp)
            position = await consumer.position(tp)
        except Exception as exc:  # a partition mid-handover: skip it this time
            log.debug("no lag for %s[%s]: %s", tp.topic, tp.partition, exc)
            continue
        if high is not None:
            lags[tp] = max(0, high - position)
    return lags


def producer(brokers: Sequence[str]) -> AIOKafkaProducer:
    # acks=all: a record we commit past must be on the broker, not in a leader's memory only
    return AIOKafkaProducer(
        bootstrap_servers=list(brokers), acks="all", linger_ms=5, max_batch_size=512 * 1024,
        max_request_size=4 * 1024 * 1024,
    )


class PartitionReader:
    """Reads partitions from their first record to the end they had when asked; no group."""

    def __init__(self, brokers: Sequence[str]) -> None:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=list(brokers), group_id=None, enable_auto_commit=False,
            auto_offset_reset="earliest", fetch_max_wait_ms=50,
        )

    async def start(self) -> None:
        await self._consumer.start()

    async def stop(self) -> None:
        await self._consumer.stop()

    async def read(self, topic: str, partitions: Iterable[int]) -> dict[int, list[ConsumerRecord]]:
        """Every record of each partition, by partition (an empty partition costs no fetch).

        Meant for partitions nobody else writes to while they are read (a changelog just
        handed over). It reads past the end offset the broker reports until a fetch comes back
        empty: Tansu 0.6 reports the base offset of the last batch + 1 as the end, which would
        leave the rest of that batch unread.
        """
        tps = [TopicPartition(topic, p) for p in partitions]
        records: dict[int, list[ConsumerRecord]] = {tp.partition: [] for tp in tps}
        if not tps:
            return records
        ends = await self._consumer.end_offsets(tps)
        starts = await self._consumer.beginning_offsets(tps)
        todo = [tp for tp in tps if ends[tp] > starts[tp]]
        if not todo:
            return records
        self._consumer.assign(todo)
        try:
            for tp in todo:
                self._consumer.seek(tp, starts[tp])
            while True:
                batch = await self._consumer.getmany(*todo, timeout_ms=200, max_records=50_000)
                for tp, got in batch.items():
                    records[tp.partition].extend(got)
                behind = [tp for tp in todo if await self._consumer.position(tp) < ends[tp]]
                if not batch and not behind:
                    return records
        finally:
            self._consumer.assign([])
