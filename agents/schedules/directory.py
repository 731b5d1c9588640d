"""Schedule storage: the compacted ``schedules`` topic, and a materialised view of it.

Every upsert and remove is one record on ``schedules`` keyed by :func:`schedule_key` (value:
``Schedule.encode()``; a tombstone removes). The topic is the only truth: each process that
needs schedules reads it from the beginning into a :class:`ScheduleView` and then follows it,
so every worker converges on the same view without any other store.

Raw aiokafka, not a Faust table: Faust's per-record path moves about 5k records/s here,
so 100,000 schedules would take 20 s to load; a plain consumer reads the topic at
about 200k/s and the load is bounded by parsing (see README, "Schedules").

The interface the REST API and the CLI use::

    directory = ScheduleDirectory(settings.kafka, partitions=settings.partitions)
    await directory.start()            # returns once the whole topic is loaded
    saved = await directory.upsert(schedule)   # no record if nothing changed
    removed = await directory.remove(tenant, id)
    directory.get(tenant, id); directory.list(tenant)
    await directory.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from cronbus.clients.kafka import connect
from cronbus.streams import topics
from cronbus.streams.events import InvalidReason
from cronbus.streams.schedules import (
    FieldProblem,
    InvalidSchedule,
    Schedule,
    decode_schedule,
    prepare_upsert,
    schedule_key,
)

log = logging.getLogger(__name__)

Listener = Callable[[bytes, Schedule | None], None]


def schedule_in(key: bytes | None, value: bytes | None) -> Schedule:
    """The schedule a record of ``schedules`` stores, or :class:`InvalidSchedule` saying why it
    stores none (no key, no JSON, a bad field, a value naming another key). Whatever the record
    holds, nothing else escapes. Every reader of the topic judges records by this."""
    if key is None:
        raise InvalidSchedule([FieldProblem("key", "a schedules record needs a key")],
                              InvalidReason.MISSING_FIELD)
    if value is None:
        raise InvalidSchedule([FieldProblem("schedule", "a tombstone removes, it stores nothing")],
                              InvalidReason.NOT_JSON)
    try:
        schedule = decode_schedule(value)
    except InvalidSchedule:
        raise
    except Exception as exc:  # a rule tripping on odd input: still a record that is no schedule
        raise InvalidSchedule([FieldProblem("schedule", f"{type(exc).__name__}: "
                                            f"{str(exc)[:200]}")],
                              InvalidReason.INTERNAL_ERROR) from None
    if schedule.key != key:
        raise InvalidSchedule([FieldProblem("key", f"the value is schedule {schedule.key!r}, "
                                            f"the key {key[:200]!r}")])
    return schedule


class ScheduleView:
    """Schedules by key and by tenant, as the records of ``schedules`` say. Pure: no I/O."""

    def __init__(self) -> None:
        self._by_key: dict[bytes, Schedule] = {}
        self._by_tenant: dict[str, dict[str, Schedule]] = {}
        self.invalid = 0

    def __len__(self) -> int:
        return len(self._by_key)

    def apply(self, key: bytes | None, value: bytes | None) -> Schedule | None:
        """Apply one record; returns the schedule it stores, or None for a removal or bad record."""
        if key is not None and value is None:
            self.remove(key)  # a tombstone for a key never written removes nothing
            return None
        try:
            schedule = schedule_in(key, value)
        except InvalidSchedule as exc:  # the ticker owning the partition logs it
            self.invalid += 1
            log.debug("schedules record %r ignored: %s", (key or b"")[:200], exc)
            return None
        self.put(schedule)
        return schedule

    def put(self, schedule: Schedule) -> None:
        self._by_key[schedule.key] = schedule
        self._by_tenant.setdefault(schedule.tenant_id, {})[schedule.id] = schedule

    def remove(self, key: bytes) -> Schedule | None:
        schedule = self._by_key.pop(key, None)
        if schedule is not None:
            tenant = self._by_tenant.get(schedule.tenant_id, {})
            tenant.pop(schedule.id, None)
            if not tenant:
                self._by_tenant.pop(schedule.tenant_id, None)
        return schedule

    def get(self, tenant_id: str, schedule_id: str) -> Schedule | None:
        return self._by_tenant.get(tenant_id, {}).get(schedule_id)

    def by_key(self, key: bytes) -> Schedule | None:
        return self._by_key.get(key)

    def list(self, tenant_id: str) -> list[Schedule]:
        return sorted(self._by_tenant.get(tenant_id, {}).values(), key=lambda s: s.id)

    def all(self) -> Iterable[Schedule]:
        return self._by_key.values()


async def ensure_schedules_topic(brokers: connect.Brokers, partitions: int, replication: int = 1) -> None:
    """Create the compacted ``schedules`` topic unless it exists."""
    await connect.TopicMaker(brokers, partitions=partitions, replication=replication,
                             compacted=topics.COMPACTED).ensure([topics.SCHEDULES])


class ScheduleDirectory:
    """Reads and writes schedules. ``get``/``list`` answer from the local view, which follows
    the topic; an upsert or remove made here is in the view when the call returns."""

    def __init__(self, brokers: connect.Brokers, *, partitions: int, replication: int = 1,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 keep: Callable[[bytes], bool] | None = None,
                 observe: Callable[[list[ConsumerRecord]], None] | None = None) -> None:
        self.brokers = brokers
        # the keys this directory holds (None: all); the records of others are not even parsed,
        # and get/list know nothing of them
        self._keep = keep
        # shown every batch of the first read of the whole topic (another reader of it at
        # start need not read it all again), and where that read ended, per partition
        self._observe = observe
        self.loaded_to: dict[int, int] = {}
        self.partitions = partitions
        self.replication = replication
        self.view = ScheduleView()
        self.loaded = asyncio.Event()
        self.listeners: list[Listener] = []
        self._clock = clock
        self._producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._follow: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        # key -> offset of this directory's last write of it, until the follower reads it back:
        # an older record of that key read meanwhile is already overtaken (a PUT read after this
        # directory's DELETE must not bring the schedule back)
        self._written: dict[bytes, int] = {}
        self.partition_count = partitions  # the topic's own count once started


    # --- the interface -------------------------------------------------------------------

    def get(self, tenant_id: str, schedule_id: str) -> Schedule | None:
        return self.view.get(tenant_id, schedule_id)

    def list(self, tenant_id: str) -> list[Schedule]:
        return self.view.list(tenant_id)

    async def upsert(self, schedule: Schedule) -> Schedule:
        """Store ``schedule``; returns what is stored. Writes nothing if the same definition is
        there already; keeps ``revision_at`` unless the timing changed."""
        async with self._lock:
            existing = self.view.by_key(schedule.key)
            stored = prepare_upsert(schedule, existing, self._clock())
            if stored is None:
                assert existing is not None
                return existing
            await self._write(stored.key, stored.encode())
            self._changed(stored.key, stored)
            return stored

    async def remove(self, tenant_id: str, schedule_id: str) -> bool:
        """Remove a schedule (a tombstone); False if there was none."""
        async with self._lock:
            key = schedule_key(tenant_id, schedule_id)
            if self.view.by_key(key) is None:
                return False
            await self._write(key, None)
            self._changed(key, None)
            return True

    # --- life cycle ------------------------------------------------------------------------

    async def start(self, timeout_s: float = 120.0) -> None:
        await ensure_schedules_topic(self.brokers, self.partitions, self.replication)
        # no linger: an upsert answers once the broker has it
        self._producer = connect.producer(self.brokers, linger_ms=0)
        await self._producer.start()
        # what the partitioner divides a key's hash by (the ticker's hashes are per partition)
        self.partition_count = len(await self._producer.partitions_for(topics.SCHEDULES))
        self._consumer = connect.reader(self.brokers)
        await self._consumer.start()
        parts = [TopicPartition(topics.SCHEDULES, p)
                 for p in sorted(self._consumer.partitions_for_topic(topics.SCHEDULES) or
                                 range(self.partitions))]
        self._consumer.assign(parts)
        await self._consumer.seek_to_beginning(*parts)
        started = time.monotonic()
        await asyncio.wait_for(self._load(parts), timeout_s)
        log.info("schedules loaded: %d in %.2fs (%d invalid records ignored)",
                 len(self.view), time.monotonic() - started, self.view.invalid)
        self.loaded.set()
        self._follow = asyncio.create_task(self._follow_topic(), name="schedules-follow")

    async def stop(self) -> None:
        if self._follow is not None:
            self._follow.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._follow
        if self._consumer is not None:
            await self._consumer.stop()
        if self._producer is not None:
            await self._producer.stop()

    # --- inside ----------------------------------------------------------------------------

    async def _write(self, key: bytes, value: bytes | None) -> None:
        assert self._producer is not None, "ScheduleDirectory.start() first"
        sent = await self._producer.send_and_wait(topics.SCHEDULES, key=key, value=value)
        self._written[key] = sent.offset

    def _overtaken(self, record: ConsumerRecord) -> bool:
        """True if this directory wrote the record's key after it (its own write is applied)."""
        written = self._written.get(record.key) if record.key is not None else None
        if written is None:
            return False
        if record.offset >= written:
            del self._written[record.key]  # read back: from here the topic is the truth again
            return record.offset == written
        return True

    def _changed(self, key: bytes, schedule: Schedule | None) -> None:
        if schedule is None:
            self.view.remove(key)
        else:
            self.view.put(schedule)
        for listener in self.listeners:
            listener(key, schedule)

    def _apply(self, record: ConsumerRecord) -> None:
        key = record.key
        if self._keep is not None and (key is None or not self._keep(key)):
            return
        if self._overtaken(record):
            return
        if key is not None and record.value is None:  # a removal, heard only if one was there
            if self.view.remove(key) is not None:
                for listener in self.listeners:
                    listener(key, None)
            return
        schedule = self.view.apply(key, record.value)
        if schedule is not None:
            assert key is not None
            for listener in self.listeners:
                listener(key, schedule)

    async def _load(self, partitions: list[TopicPartition]) -> None:
        assert self._consumer is not None
        async for records in connect.to_end(self._consumer, partitions, timeout_ms=500,
                                            max_records=10_000):
            for record in records:
                self._apply(record)
            if self._observe is not None:
                self._observe(records)
        for tp in partitions:
            self.loaded_to[tp.partition] = await self._consumer.position(tp)

    async def _follow_topic(self) -> None:
        assert self._consumer is not None
        while True:
            try:
                batch = await self._consumer.getmany(timeout_ms=1000)
                for records in batch.values():
                    for record in records:
                        self._apply(record)
            except asyncio.CancelledError:
                raise
            except Exception:  # keep following; the view must not stop
                log.exception("following the schedules topic failed; retrying")
                await asyncio.sleep(1.0)
