"""Every Kafka client cronbus makes is built here, with raw aiokafka, so that their options (and
the connection's) are set in one place: producers, consumers in a group, readers without one,
the admin client; topics are ensured here, and a partition is read to its end here. Each is
given the brokers as a :class:`KafkaAccess` (``Settings.kafka``: servers, SASL and TLS), so a
secured cluster reaches every client; a plain ``host:port`` list means PLAINTEXT (tests, benches).

Faust's per-record stream path costs about 200 µs a record on these machines; the roles read
batches with ``getmany`` and own their commits instead (see the README's "Ingest" section).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Collection, Iterable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.coordinator.assignors.abstract import AbstractPartitionAssignor
from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from aiokafka.errors import TopicAlreadyExistsError

from cronbus.clients.kafka.fetch_pacing import FetchPacing, PacedConsumer
from cronbus.streams.security import KafkaAccess

log = logging.getLogger(__name__)

Brokers = KafkaAccess | Sequence[str]
# a partition's fetch: more than a kept copy (1 MB) or a 1 MiB event with room to spare
MAX_PARTITION_FETCH_BYTES = 4 * 1024 * 1024


def producer(brokers: Brokers, *, linger_ms: int = 5, client_id: str | None = None,
             **tuning: Any) -> AIOKafkaProducer:
    """A producer whose records are on every in-sync replica before the send completes:
    a record we commit past must be on the broker, not in a leader's memory only.
    ``linger_ms=0`` where a lone record must not wait for a timer (an event's way to its job:
    the publisher, ingest): records sent while a request is in flight still go out together
    (aiokafka keeps one request in flight per broker). The ticker keeps 5 ms: its fire lag
    measured worse without (README, "The ticker").
    ``tuning``: other aiokafka producer options, over these (the benches' own batching)."""
    options: dict[str, Any] = {
        "acks": "all", "linger_ms": linger_ms, "max_batch_size": 512 * 1024,
        "max_request_size": 4 * 1024 * 1024, **({"client_id": client_id} if client_id else {}),
    }
    return AIOKafkaProducer(**_options(brokers), **{**options, **tuning})


def group_consumer(
    brokers: Brokers, *, group_id: str, topics: Sequence[str],
    listener: ConsumerRebalanceListener, session_timeout_s: float, rebalance_timeout_s: float,
    assignors: tuple[type[AbstractPartitionAssignor], ...] = (RoundRobinPartitionAssignor,),
    max_batch_bytes: int = 16 * 1024 * 1024, client_id: str | None = None,
    fetch_max_wait_ms: int = 500, pacing: FetchPacing | None = None,
) -> AIOKafkaConsumer:
    """A member of ``group_id`` reading ``topics``; offsets are committed by the caller only.
    Its fetches wait ``fetch_max_wait_ms`` each, or as ``pacing`` says fetch by fetch."""
    options: dict[str, Any] = dict(
        **_options(brokers),
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=int(session_timeout_s * 1000),
        heartbeat_interval_ms=int(min(3.0, session_timeout_s / 3) * 1000),
        rebalance_timeout_ms=int(rebalance_timeout_s * 1000),
        max_partition_fetch_bytes=MAX_PARTITION_FETCH_BYTES,
        fetch_max_bytes=max_batch_bytes,
        partition_assignment_strategy=assignors,
        **({"client_id": client_id} if client_id else {}),
    )
    if pacing is not None:
        consumer: AIOKafkaConsumer = PacedConsumer(pacing=pacing, **options)
    else:
        consumer = AIOKafkaConsumer(fetch_max_wait_ms=fetch_max_wait_ms, **options)
    consumer.subscribe(topics=list(topics), listener=listener)
    return consumer


def reader(brokers: Brokers, *topics: str, from_start: bool = True,
           fetch_max_wait_ms: int = 500) -> AIOKafkaConsumer:
    """A consumer in no group: it commits nothing and moves nobody's offsets. Given ``topics``,
    it reads all their partitions; else the caller assigns partitions."""
    return AIOKafkaConsumer(
        *topics, **_options(brokers), group_id=None, enable_auto_commit=False,
        auto_offset_reset="earliest" if from_start else "latest",
        max_partition_fetch_bytes=MAX_PARTITION_FETCH_BYTES, fetch_max_wait_ms=fetch_max_wait_ms,
    )


def admin(brokers: Brokers) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(**_options(brokers))


def access(brokers: Brokers) -> KafkaAccess:
    """``brokers`` as a :class:`KafkaAccess` (a plain list: PLAINTEXT)."""
    return brokers if isinstance(brokers, KafkaAccess) else KafkaAccess(servers=tuple(brokers))


def servers(brokers: Brokers) -> list[str]:
    return list(access(brokers).servers)


def _options(brokers: Brokers) -> dict[str, Any]:
    return access(brokers).aiokafka_options()


# --- topics ------------------------------------------------------------------------------------


class TopicMaker:
    """Creates the topics cronbus needs where they are missing, each name asked about once per
    process (every role asks for what it uses; only the first asking costs a round trip)."""

    def __init__(self, brokers: Brokers, *, partitions: int, replication: int,
                 compacted: Collection[str] = ()) -> None:
        self.brokers = brokers
        self.partitions = partitions
        self.replication = replication
        self.compacted = set(compacted)
        self._known: set[str] = set()

    async def ensure(self, names: Iterable[str]) -> list[str]:
        """Create those of ``names`` that do not exist (an existing one is left as it is);
        returns the names created."""
        wanted = [name for name in dict.fromkeys(names) if name not in self._known]
        if not wanted:
            return []
        client = admin(self.brokers)
        await client.start()
        try:
            missing = [name for name in wanted if name not in set(await client.list_topics())]
            for name in missing:  # one at a time: another worker may be creating the same
                with contextlib.suppress(TopicAlreadyExistsError):
                    await client.create_topics([NewTopic(
                        name, num_partitions=self.partitions,
                        replication_factor=self.replication,
                        topic_configs={"cleanup.policy": "compact"} if name in self.compacted
                        else {},
                    )])
        finally:
            await client.close()
        self._known.update(wanted)
        if missing:
            log.info("created topic(s) %s", ", ".join(missing))
        return missing


# --- reading to the end ------------------------------------------------------------------------


async def to_end(consumer: AIOKafkaConsumer, partitions: Iterable[TopicPartition], *,
                 timeout_ms: int = 200, max_records: int = 50_000
                 ) -> AsyncIterator[list[ConsumerRecord]]:
    """Every record of ``partitions`` (assigned to ``consumer``) from its position to the end,
    in batches; an empty partition costs no fetch.

    The end is reached when the position passed the end offset the broker reported *and* a
    fetch comes back empty: Tansu 0.6 reports the base offset of a partition's last batch + 1
    as its end, which would leave the rest of that batch unread.
    """
    partitions = list(partitions)
    ends = await consumer.end_offsets(partitions)
    starts = await consumer.beginning_offsets(partitions)
    todo = [tp for tp in partitions if ends[tp] > starts[tp]]
    while todo:
        batch = await consumer.getmany(*todo, timeout_ms=timeout_ms, max_records=max_records)
        for records in batch.values():
            yield records
        if not batch:
            todo = [tp for tp in todo if await consumer.position(tp) < ends[tp]]


class PartitionReader:
    """Reads whole partitions from their first record, no group: restoring a changelog, taking
    a partition of ``schedules`` on."""

    def __init__(self, brokers: Brokers) -> None:
        self._consumer = reader(brokers, fetch_max_wait_ms=50)

    async def start(self) -> None:
        await self._consumer.start()

    async def stop(self) -> None:
        await self._consumer.stop()

    async def read(self, topic: str, partitions: Iterable[int]) -> dict[int, list[ConsumerRecord]]:
        """Every record of each partition, by partition. Meant for partitions nobody else
        writes to while they are read (a changelog just handed over)."""
        partitions = list(partitions)
        records: dict[int, list[ConsumerRecord]] = {p: [] for p in partitions}
        async for got in self.batches(topic, partitions):
            records[got[0].partition].extend(got)
        return records

    async def batches(self, topic: str, partitions: Iterable[int]
                      ) -> AsyncIterator[list[ConsumerRecord]]:
        """Every record of each partition, a batch (of one partition) at a time, as fetched:
        the consumer fetches the next batch while the caller works on this one, and a caller
        that keeps only what it makes of the records never holds them all at once."""
        tps = [TopicPartition(topic, p) for p in partitions]
        if not tps:
            return
        self._consumer.assign(tps)
        try:
            await self._consumer.seek_to_beginning(*tps)
            async for got in to_end(self._consumer, tps):
                yield got
        finally:
            self._consumer.assign([])


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
