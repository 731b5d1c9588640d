"""The ticker role: fires the schedules of the ``schedules`` partitions this worker owns.

Each ticker is a member of the consumer group ``<app id>-ticker`` on ``schedules``; the group
decides who owns which partitions, and so which schedules. Taking a partition on, a ticker
reads it from its start (it is compacted: one record per live schedule) and the partition's
fire states from Redis, then keeps following it. Due schedules come off a wheel
(:class:`cronbus.agents.schedules.book.TickerBook`), never from a scan.

One step fires every due schedule: it plans each (misfire, limit, overlap) and appends one
``cron-ticks`` record per (schedule, fire time) with a deterministic id; once the broker has
them, their fire states are saved in Redis. Steps overlap (a million every-minute schedules
fire 16,700 ticks a second): the next step is planned from this one's states while the broker
acknowledges its ticks, at most ``MAX_IN_FLIGHT`` at once, and the states are saved step by
step in order, each only after its step's ticks and every earlier step's are on the broker.
A step whose ticks fail takes back its plans and every later step's (planned from them): their
schedules are looked at again from their state before it. A handover waits for the steps in
flight and saves their states, so the next owner goes on from saved states. A kill -9 between
the append and the save makes the next owner fire those ticks again under the same ids: the job
they become has the same id too, and the processor acknowledges a completed job id without
calling again.

A world-clock schedule is fired by the ticker owning its *tenant's* partition of ``schedules``
(its home), whichever partition its own key is on: so one ticker fires all of a tenant's world
schedules, in world-time order. Every ticker follows the world schedules of every partition
(there are few), and keeps their fire states in their home partition's hash.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import mode
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.producer.message_accumulator import BatchBuilder

from cronbus.agents.schedules.book import (
    Entry,
    FireState,
    Plan,
    TickerBook,
    plan,
    plan_world,
)
from cronbus.agents.schedules.directory import schedule_in
from cronbus.agents.schedules.loaded import LoadedSchedule, loaded_schedule
from cronbus.clients.kafka import connect
from cronbus.clients.redis.fire_states import fire_states_key
from cronbus.clients.redis.job_status import JobStatusStore
from cronbus.clients.redis.outage import RedisOutage
from cronbus.clients.redis.schedule_runs import RunLog
from cronbus.streams import topics
from cronbus.streams.clocks import WorldClock
from cronbus.streams.jobs import JobState, job_id_for
from cronbus.streams.keys import partition_of, tenant_key
from cronbus.streams.metrics import Metrics
from cronbus.streams.schedule_runs import FiredRun
from cronbus.streams.schedules import InvalidSchedule, Schedule, tick_id, tick_id_at
from cronbus.streams.settings import Settings
from cronbus.streams.stalls import Stalls

log = logging.getLogger(__name__)

# a buffered fire (overlap buffer_one) looks at its previous run this often
OVERLAP_POLL = timedelta(seconds=1)
# at most this many schedules per step, so a huge catch-up still lets records and handovers in
MAX_STEP = 5_000
# longest sleep between steps when nothing is due (the group consumer fetches meanwhile)
IDLE_MS = 1_000
# schedules planned before their ticks are handed to the producer (it sends nothing while we
# compute; a batch handed over waits for the partition's previous one to be taken)
SEND_BATCH = 500
# steps whose ticks may be unacknowledged at once (each holds up to MAX_STEP plans and ticks)
MAX_IN_FLIGHT = 3
# fired runs waiting for the run history before a step waits for it (bounds their memory)
RECORD_BACKLOG = 4 * MAX_STEP


_COMPACT_JSON = json.JSONEncoder(separators=(",", ":"))  # one encoder, not one per call


class Tick:
    """One (schedule, fire time) as the ticker sends it: a ``cron-ticks`` record's value, written
    by hand (a tick is the hot path: ~5 µs here against ~35 µs through the pydantic model; a
    unit test holds it to :class:`cronbus.streams.events.CronTick`). Its fire time is spelled
    once, for its id, its value and its run."""

    __slots__ = ("at", "fire_at", "fired_at", "schedule")

    def __init__(self, schedule: Schedule | LoadedSchedule, fire_at: datetime,
                 fired_at: datetime | None = None) -> None:
        self.schedule = schedule
        self.fire_at = fire_at  # a world-clock schedule's: the world time it was due at
        self.fired_at = fired_at  # a world-clock schedule's: the wall time it fired
        self.at = fire_at.isoformat()

    @property
    def id(self) -> str:
        # fire times are UTC (cron.py): then the id's UTC spelling is this one
        if self.fire_at.utcoffset():
            return tick_id(self.schedule.key, self.fire_at)
        return tick_id_at(self.schedule.key, self.at)

    def value(self, tick_id_: str) -> bytes:
        schedule, at = self.schedule, self.at
        if type(schedule) is LoadedSchedule:
            # its tenant, id and job type are checked to need no JSON escapes
            payload = _COMPACT_JSON.encode(schedule.payload) if schedule.payload else "{}"
            return (f'{{"event_id":"{tick_id_}","tenant_id":"{schedule.tenant_id}",'
                    f'"occurred_at":"{at}","type":"{topics.CRON_TICKS}",'
                    f'"schedule_id":"{schedule.id}","job_type":"{schedule.job_type}",'
                    f'"fire_at":"{at}","payload":{payload},"trigger":"schedule"}}').encode()
        tick = {
            "event_id": tick_id_, "tenant_id": schedule.tenant_id, "occurred_at": at,
            "type": topics.CRON_TICKS, "schedule_id": schedule.id,
            "job_type": schedule.job_type, "fire_at": at,
            "payload": schedule.payload, "trigger": "schedule",
        }
        if self.fired_at is not None:
            tick.update(occurred_at=self.fired_at.isoformat(), clock="world")
        if schedule.notify is not None:
            tick["notify"] = schedule.notify.model_dump(exclude_none=True)
        if schedule.priority is not None:
            tick["priority"] = schedule.priority
        return _COMPACT_JSON.encode(tick).encode()

    def run(self, tick_id_: str, emitted_at: float) -> FiredRun:
        """The tick as the schedule's run history keeps it."""
        schedule = self.schedule
        return FiredRun(
            run_id=tick_id_,
            job_id=job_id_for(schedule.tenant_id, schedule.job_type,
                              f"tick:{schedule.id}:{self.at}"),  # as Schedule.job_id_at
            fire_at=self.at, trigger="schedule", emitted_at=round(emitted_at, 3))

    def run_entry(self, tick_id_: str, emitted_at: str) -> str:
        """:meth:`run` as the run history stores it (``FiredRun.encode``), ``emitted_at``
        spelled already (one time for a batch), written by hand for a loaded schedule: its job
        type needs no escapes, its ids and time neither (a unit test holds it to the model)."""
        schedule = self.schedule
        if type(schedule) is not LoadedSchedule:
            return self.run(tick_id_, float(emitted_at)).encode()
        job_id = job_id_for(schedule.tenant_id, schedule.job_type,
                            f"tick:{schedule.id}:{self.at}")
        return (f'{{"run_id": "{tick_id_}", "job_id": "{job_id}", "fire_at": "{self.at}", '
                f'"trigger": "schedule", "emitted_at": {emitted_at}}}')


class _Step:
    """A step's plans, settled in the book as soon as its ticks were queued, and the task that
    carries it out: waits for the step before (states are saved in order), then for the broker
    to have its ticks, then hands its states to the save. Its result says whether it (and every
    step before it) succeeded."""

    __slots__ = ("before", "done", "failure", "plans", "ticks")

    def __init__(self, plans: list[tuple[Entry, Plan]], before: list[FireState],
                 ticks: list[tuple[Tick, str]]) -> None:
        self.plans = plans
        self.before = before  # each plan's state before it, to take it back if it fails
        self.ticks = ticks
        self.failure: BaseException | None = None
        self.done: asyncio.Future[bool] | None = None


class Ticker(mode.Service):
    """The ticker role (see the module's docstring)."""

    def __init__(self, settings: Settings, topic_maker: connect.TopicMaker, metrics: Metrics,
                 redis: aioredis.Redis, status: JobStatusStore, *,
                 before_start: Callable[[Callable[[list[ConsumerRecord]], None]],
                                        Awaitable[dict[int, int]]] | None = None,
                 clock: Callable[[], float] = time.time,
                 **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.settings = settings
        self.topic_maker = topic_maker
        self.metrics = metrics
        self.redis = redis
        self.clock = clock
        self.grace = timedelta(seconds=settings.schedule_misfire_grace_s)
        self.book = TickerBook()
        self.status = status
        # done before any partition is taken on (and what it loads is let go before the
        # loaded schedules are frozen out of the collector); it reads the whole topic, shows
        # each batch to the world feed and says where it stopped
        self.before_start = before_start
        self.runs = RunLog(redis, namespace=settings.redis_namespace,
                           kept=settings.schedule_runs_kept, ttl_s=settings.job_status_ttl_s)
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._reader: connect.PartitionReader | None = None
        self._step_lock = asyncio.Lock()  # a handover waits for the step in progress
        self._in_flight: deque[_Step] = deque()  # steps whose ticks may be unacknowledged
        self._saving: asyncio.Future[None] | None = None  # fire states being saved
        self._to_record: list[tuple[Tick, str]] = []  # fired runs for the run history
        # fire states, run history and overlap checks are in Redis: its outage is said once
        self.redis_outage = RedisOutage("ticker")
        self._loop_task: asyncio.Task[None] | None = None
        self._stopping = False
        self._loaded = False
        self._pending: set[int] = set()  # assigned partitions not taken on yet (retried)
        self._next_offset: dict[int, int] = {}  # per owned partition: the next record to apply
        # fire states whose ticks are on the broker but not yet in Redis, per partition
        self._unsaved: defaultdict[int, dict[bytes, bytes]] = defaultdict(dict)
        self._recording: asyncio.Future[None] | None = None  # run history being written
        self._tick_partitions = settings.partitions  # of cron-ticks, as the broker says at start
        self._invalid_seen: set[tuple[int, int]] = set()  # (partition, offset) said once
        # no record holds a ticker back: every schedules record is decided as it is read
        self.stalls: Stalls | None = None
        self._failed_steps = 0  # in a row: the first is logged with its traceback
        # every tenant's world clock, followed on its changelog (ingest owns and writes it)
        self.clock_log = topics.world_clocks_topic(settings.app_id)
        self._clock_feed: AIOKafkaConsumer | None = None
        self.world_times: dict[str, datetime] = {}
        self._world_due: set[str] = set()  # tenants whose world schedules need a look
        self._world_waiting: set[str] = set()  # tenants with a fire buffered behind a run
        self._world_polled_at = 0.0
        # every partition's world-clock schedules, followed; placed on the ticker of their home
        self._world_feed: AIOKafkaConsumer | None = None
        self.world_defs: dict[bytes, Schedule] = {}
        self._world_changed: set[bytes] = set()
        self._schedule_partitions = settings.partitions

    def state_key(self, partition: int) -> str:
        """The Redis hash of one partition's fire states (field: schedule key)."""
        return fire_states_key(self.settings.redis_namespace, self.settings.app_id, partition)

    # lifecycle -------------------------------------------------------------------------------

    @property
    def assignment(self) -> set[TopicPartition]:
        return set(self._consumer.assignment()) if self._consumer else set()

    @property
    def ready(self) -> bool:
        """Owning partitions of ``schedules`` with their schedules and fire states loaded."""
        return self._loaded and not self._pending and bool(self.assignment)

    async def lag(self) -> dict[TopicPartition, int]:
        """Schedule records on owned partitions not read yet."""
        return await connect.unread(self._consumer) if self._consumer else {}

    async def on_start(self) -> None:
        read_to: dict[int, int] = {}
        if self.before_start is not None:
            # its read of the whole topic finds the world schedules too: the world feed goes on
            # from where it stopped (a million records are not read a third time at start)
            read_to = await self.before_start(self._learn_world)
        brokers = self.settings.kafka
        # cron-ticks and schedules (compacted) among them
        await self.topic_maker.ensure([topics.SCHEDULES, topics.CRON_TICKS, self.clock_log])
        self._producer = connect.producer(brokers)
        await self._producer.start()
        # the tenant's partition, as the producer's partitioner would pick it but cached
        # (murmur2 in pure Python costs ~10 µs a tick)
        self._tick_partitions = len(await self._producer.partitions_for(topics.CRON_TICKS))
        self._reader = connect.PartitionReader(brokers)
        await self._reader.start()
        self._consumer = connect.group_consumer(
            brokers, group_id=f"{self.settings.app_id}-ticker", topics=[topics.SCHEDULES],
            listener=_Handover(self),
            session_timeout_s=self.settings.broker_session_timeout_s,
            rebalance_timeout_s=self.settings.broker_rebalance_timeout_s,
        )
        await self._consumer.start()
        self._clock_feed = connect.reader(brokers, self.clock_log, fetch_max_wait_ms=100)
        await self._clock_feed.start()
        await self._start_world_feed(brokers, read_to)
        self._loop_task = asyncio.ensure_future(self._run())

    async def on_stop(self) -> None:
        self._stopping = True  # the step in progress saves its states, then the group is left
        if self._loop_task is not None:
            await self._loop_task
        async with self._step_lock:
            await self._drain()
        if self._recording is not None:
            await self._recording
        for part in (self._consumer, self._producer, self._reader, self._clock_feed,
                     self._world_feed):
            if part is not None:
                await part.stop()

    # the loop --------------------------------------------------------------------------------

    async def _run(self) -> None:
        assert self._consumer is not None
        while not self._stopping:
            wake = self.book.next_wake()
            wait_ms = IDLE_MS
            if wake is not None:
                wait_ms = max(0, min(IDLE_MS, int((wake.timestamp() - self.clock()) * 1000)))
            try:
                batch = await self._consumer.getmany(timeout_ms=wait_ms, max_records=10_000)
            except Exception:
                log.exception("fetching schedules failed; trying again")
                await asyncio.sleep(1)
                continue
            async with self._step_lock:
                try:
                    if self._pending:
                        await self._take_on(self._pending)
                    owned = self.assignment
                    for tp, records in batch.items():
                        if tp in owned and self.book.owns(tp.partition):
                            await self._apply(tp.partition, records)
                    await self._fire_due()
                    await self._follow_world_schedules()
                    await self._follow_clocks()
                    await self._fire_world()
                except Exception as exc:
                    self._failed_steps += 1
                    if self.redis_outage.failed(exc):
                        pass  # said once for the ticker; its schedules wait for Redis
                    elif self._failed_steps == 1:
                        log.exception("a ticker step failed; its schedules are looked at again "
                                      "in 1s (said once until a step succeeds)")
                    else:
                        log.debug("a ticker step failed again (%d in a row): %s",
                                  self._failed_steps, exc)
                else:
                    if self._failed_steps:
                        log.info("ticker steps succeed again after %d failure(s)",
                                 self._failed_steps)
                    self._failed_steps = 0

    async def _apply(self, partition: int, records: list[ConsumerRecord]) -> None:
        """Schedule upserts and removals on an owned partition, as they are written."""
        now = datetime.fromtimestamp(self.clock(), UTC)
        removed: list[bytes] = []
        # a batch fetched before this partition was (re)taken on holds records already read
        records = [r for r in records if r.offset >= self._next_offset.get(partition, 0)]
        if not records:
            return
        self._next_offset[partition] = records[-1].offset + 1
        for record in records:
            schedule = self._decode(record)
            if schedule is not None and schedule.clock == "world":
                # placed at its tenant's home by the world feed; a wall definition before goes
                entry = self.book.entries.get(schedule.key)
                if entry is not None and entry.schedule.clock == "wall":
                    self.book.remove(schedule.key)
                    removed.append(schedule.key)
            elif schedule is not None:
                self.book.put(partition, schedule, None, now)
            elif (record.value is None and record.key is not None
                  and record.key not in self.world_defs
                  and self.book.remove(record.key) is not None):
                removed.append(record.key)  # a tombstone for a key never written: nothing
        if removed:  # its fire state goes with it: the same id later is a new schedule
            unsaved = self._unsaved.get(partition, {})
            for key in removed:
                unsaved.pop(key, None)
            await self.redis.hdel(self.state_key(partition), *removed)

    async def _fire_due(self) -> None:
        await self._reap()
        while len(self._in_flight) >= MAX_IN_FLIGHT:  # memory stays bounded
            await asyncio.wait([self._in_flight[0].done])  # type: ignore[list-item]
            await self._reap()
        if len(self._to_record) >= RECORD_BACKLOG and self._recording is not None:
            await self._recording  # the run history is behind: it catches up first
        now = datetime.fromtimestamp(self.clock(), UTC)
        entries = self.book.due(now, limit=MAX_STEP)
        if not entries:
            return
        try:
            active = await self._previous_active(entries, now)
            plans, before, ticks, sends = await self._plan_and_queue(entries, active, now)
        except BaseException:
            self.book.retry(entries, now + timedelta(seconds=1))  # nothing was settled
            raise
        # settled at once, so the next step is planned from these states while the broker
        # acknowledges these ticks; taken back (_reap) if they fail
        step = _Step(plans, before, ticks)
        for entry, outcome in plans:
            self.book.settle(entry, outcome)
        previous = self._in_flight[-1].done if self._in_flight else None
        step.done = asyncio.ensure_future(self._carry_out(step, sends, previous))
        self._in_flight.append(step)

    async def _carry_out(self, step: _Step, sends: list[asyncio.Future[Any]],
                         previous: asyncio.Future[bool] | None) -> bool:
        """Once the step before is carried out and the broker has this step's ticks, hand
        their states to the save: this worker goes on from them even if saving them fails now
        (they are saved with a later step's); only its successor would fire these ticks again,
        under the same ids. Then their run history, off the firing path."""
        try:
            earlier_ok = await previous if previous is not None else True
            results = await asyncio.gather(*sends, return_exceptions=True)
            for result in results:
                if isinstance(result, BaseException):
                    step.failure = result
                    return False
            if not earlier_ok:
                return False  # planned from states taken back: taken back too
            self._count(step.plans, step.ticks)
            entries = self.book.entries
            for (entry, outcome), before in zip(step.plans, step.before, strict=True):
                key = entry.schedule.key
                if outcome.state != before and key in entries:  # not removed meanwhile
                    self._unsaved[entry.partition][key] = outcome.state.encode()
            self._kick_save()
            self._kick_record(step.ticks)
            return True
        except BaseException as exc:
            step.failure = exc
            return False

    async def _reap(self) -> None:
        """Let go of the steps carried out, in order. A step whose ticks failed is taken back
        with every later one (each was planned from the states before it): their schedules go
        back to their states before it, the latest step first, and are looked at again in 1s
        (ticks already on the broker fire again under the same ids)."""
        while self._in_flight and self._in_flight[0].done.done():  # type: ignore[union-attr]
            step = self._in_flight.popleft()
            assert step.done is not None
            if step.done.result():
                continue
            later = list(self._in_flight)
            self._in_flight.clear()
            if later:
                await asyncio.wait([s.done for s in later])  # type: ignore[misc]
            now = datetime.fromtimestamp(self.clock(), UTC)
            again = now + timedelta(seconds=1)
            for taken_back in reversed([step, *later]):
                for (entry, _), before in zip(taken_back.plans, taken_back.before, strict=True):
                    self.book.restore(entry.schedule.key, before, again, now)
            assert step.failure is not None
            raise step.failure

    async def _drain(self) -> None:
        """Wait for the steps in flight and save their states (a handover, a stop)."""
        while self._in_flight:
            await asyncio.wait([self._in_flight[0].done])  # type: ignore[list-item]
            try:
                await self._reap()
            except Exception:
                log.exception("ticks of a step failed before a handover; their schedules go "
                              "on from their saved states")
        if self._saving is not None:
            await self._saving
        await self._save()

    def _settle(self, plans: list[tuple[Entry, Plan]], ticks: list[tuple[Tick, str]]) -> None:
        """The plans' ticks are on the broker (world fires wait for them): as :meth:`_carry_out`
        does, with the book settled here."""
        for entry, outcome in plans:
            if outcome.state != entry.state:
                self._unsaved[entry.partition][entry.schedule.key] = outcome.state.encode()
            self.book.settle(entry, outcome)
        self._kick_save()
        self._kick_record(ticks)

    def _kick_save(self) -> None:
        """Save the unsaved fire states, one save at a time (so they land in order)."""
        if self._saving is None or self._saving.done():
            self._saving = asyncio.ensure_future(self._save_all())

    async def _save_all(self) -> None:
        while any(self._unsaved.values()):
            if not await self._save():
                return  # tried again when the next step hands over its states

    def _kick_record(self, ticks: list[tuple[Tick, str]]) -> None:
        """Queue fired runs for the run history, written one batch at a time."""
        if not ticks:
            return
        self._to_record.extend(ticks)
        if self._recording is None or self._recording.done():
            self._recording = asyncio.ensure_future(self._record_all())

    async def _record_all(self) -> None:
        while self._to_record:
            ticks, self._to_record = self._to_record, []
            await self._record_runs(ticks)

    async def _send_tick(self, tick: Tick, tick_id_: str) -> asyncio.Future[Any]:
        """Queue one tick on its tenant's partition of cron-ticks; the future says when the
        broker has it."""
        assert self._producer is not None
        key = tenant_key(tick.schedule.tenant_id)
        return await self._producer.send(  # type: ignore[no-any-return]
            topics.CRON_TICKS, key=key, value=tick.value(tick_id_),
            partition=partition_of(key, self._tick_partitions))

    def _home(self, tenant_id: str) -> int:
        """The partition of ``schedules`` whose ticker fires a tenant's world schedules."""
        return partition_of(tenant_key(tenant_id), self._schedule_partitions)

    async def _start_world_feed(self, brokers: connect.Brokers, read_to: dict[int, int]) -> None:
        """Read every partition's world schedules to their end, then follow them from there
        (from ``read_to``, where a partition was read already)."""
        assert self._producer is not None
        self._world_feed = connect.reader(brokers, fetch_max_wait_ms=100)
        await self._world_feed.start()
        parts = sorted(await self._producer.partitions_for(topics.SCHEDULES))
        self._schedule_partitions = len(parts)
        tps = [TopicPartition(topics.SCHEDULES, p) for p in parts]
        self._world_feed.assign(tps)
        unread = [tp for tp in tps if tp.partition not in read_to]
        if unread:
            await self._world_feed.seek_to_beginning(*unread)
        for tp in tps:
            if tp.partition in read_to:
                self._world_feed.seek(tp, read_to[tp.partition])
        async for records in connect.to_end(self._world_feed, tps):
            self._learn_world(records)

    def _learn_world(self, records: Iterable[ConsumerRecord]) -> None:
        """Keep the world schedules among ``records`` (a cheap look first: most are wall)."""
        for record in records:
            if record.key is None:
                continue
            if record.value is not None and b'"clock":"world"' in record.value:
                schedule = self._decode_full(record)
                if schedule is not None and schedule.clock == "world":
                    self.world_defs[record.key] = schedule
                    self._world_changed.add(record.key)
                    continue
            if self.world_defs.pop(record.key, None) is not None:  # removed, or wall now
                self._world_changed.add(record.key)

    async def _follow_world_schedules(self, *, to_end: bool = False) -> None:
        """Place the world schedules that changed on the ticker of their home partition
        (``to_end``: every one written so far, not only those fetched already)."""
        assert self._world_feed is not None
        if to_end:
            async for records in connect.to_end(self._world_feed, self._world_feed.assignment()):
                self._learn_world(records)
        else:
            for records in (await self._world_feed.getmany(timeout_ms=0)).values():
                self._learn_world(records)
        if not self._world_changed:
            return
        now = datetime.fromtimestamp(self.clock(), UTC)
        changed, self._world_changed = self._world_changed, set()
        gone: dict[int, list[bytes]] = defaultdict(list)
        for key in changed:
            schedule = self.world_defs.get(key)
            entry = self.book.entries.get(key)
            if schedule is None:  # removed, or a wall schedule now: its world state goes
                if entry is not None and entry.schedule.clock == "world":
                    self.book.remove(key)
                    gone[entry.partition].append(key)
                continue
            home = self._home(schedule.tenant_id)  # the key names the tenant: it never moves
            if not self.book.owns(home):
                continue
            stored = None
            if key not in self.book.entries:  # new here: its state, if it fired before
                raw = await self.redis.hget(self.state_key(home), key)
                stored = FireState.decode(raw) if raw else None
            self.book.put(home, schedule, stored, now)
            self._world_due.add(schedule.tenant_id)  # a world time already passed fires at once
        for partition, keys in gone.items():
            await self.redis.hdel(self.state_key(partition), *keys)

    async def _follow_clocks(self) -> None:
        """Read what the world clocks' changelog has new; a moved clock's tenant is due."""
        assert self._clock_feed is not None
        batch = await self._clock_feed.getmany(timeout_ms=0)
        for record in (r for records in batch.values() for r in records):
            try:
                clock = WorldClock.decode(record.value)
            except Exception:  # not written by ingest: no clock moved
                continue
            known = self.world_times.get(clock.tenant_id)
            if known is None or clock.world_time > known:
                self.world_times[clock.tenant_id] = clock.world_time
                self._world_due.add(clock.tenant_id)

    async def _fire_world(self) -> None:
        """Fire the world-clock schedules of tenants whose clock moved (or whose world schedules
        changed): every fire time the clock passed, per misfire policy, one tenant's ticks in
        world-time order; then their states are saved, as the wall clock's are."""
        if self._world_waiting and self.clock() - self._world_polled_at >= OVERLAP_POLL.seconds:
            # a buffered fire waits for the previous run to finish: looked at every second
            self._world_polled_at = self.clock()
            self._world_due |= self._world_waiting
        # only the tenants whose world schedules this ticker fires (their home is here)
        self._world_due = {t for t in self._world_due if self.book.owns(self._home(t))}
        if not self._world_due:
            return
        # a schedule written before the clock moved is on the broker before the clock's record:
        # read them all first, so none of them fires later, out of world-time order
        await self._follow_world_schedules(to_end=True)
        due = {t: (self.world_times[t], self.book.world_entries(t))
               for t in self._world_due & self.book.world_tenants() if t in self.world_times}
        if not due:
            self._world_due.clear()
            return
        fired_at = datetime.fromtimestamp(self.clock(), UTC)
        active = await self._previous_active([e for _, mine in due.values() for e in mine], None)
        plans: list[tuple[Entry, Plan]] = []
        ticks: list[tuple[Tick, str]] = []
        sends = []
        for world_now, entries in due.values():
            planned = [(entry, plan_world(entry.schedule, entry.state, world_now,
                                          previous_active=entry.schedule.key in active))
                       for entry in entries]
            plans += planned
            for fire_at, entry in sorted(((at, e) for e, p in planned for at in p.fires),
                                         key=lambda fire: fire[0]):
                tick = Tick(entry.schedule, fire_at, fired_at)
                ticks.append((tick, tick.id))
                sends.append(await self._send_tick(tick, tick.id))
        if sends:
            await asyncio.gather(*sends)
        self._world_due.clear()  # their ticks are on the broker
        self._count(plans, [])  # misfires and overlaps (a world fire's lag is no wall lag)
        for tick, _ in ticks:
            self.metrics.schedule_fires.labels(tick.schedule.job_type).inc()
        self._world_waiting = {entry.schedule.tenant_id for entry, outcome in plans
                               if outcome.state.buffered is not None} | (
            self._world_waiting - set(due))
        self._settle(plans, ticks)

    async def _plan_and_queue(self, entries: list[Entry], active: set[bytes], now: datetime
                              ) -> tuple[list[tuple[Entry, Plan]], list[FireState],
                                         list[tuple[Tick, str]], list[asyncio.Future[Any]]]:
        """Plan each schedule and queue its ticks, a batch per partition of cron-ticks (one
        future a batch, not one a record: a million schedules fire 16,700 ticks a second),
        sent as they fill and every ``SEND_BATCH`` schedules (the first are on their way while
        the rest are planned); the futures say when the broker has them. With each plan, the
        state it was planned from."""
        assert self._producer is not None
        plans: list[tuple[Entry, Plan]] = []
        before: list[FireState] = []
        ticks: list[tuple[Tick, str]] = []
        batches: dict[int, BatchBuilder] = {}
        sends: list[asyncio.Future[Any]] = []
        for n, entry in enumerate(entries, 1):
            schedule, state = entry.schedule, entry.state
            outcome = plan(schedule, state, now, grace=self.grace,
                           previous_active=schedule.key in active, poll=OVERLAP_POLL)
            plans.append((entry, outcome))
            before.append(state)
            for fire_at in outcome.fires:
                tick = Tick(schedule, fire_at)
                tick_id_ = tick.id
                ticks.append((tick, tick_id_))
                key = tenant_key(schedule.tenant_id)
                partition = partition_of(key, self._tick_partitions)
                batch = batches.get(partition)
                if batch is None:
                    batch = batches[partition] = self._producer.create_batch()
                value = tick.value(tick_id_)
                if batch.append(key=key, value=value, timestamp=None) is None:  # full
                    sends.append(await self._send_batch(batch, partition))
                    batch = batches[partition] = self._producer.create_batch()
                    batch.append(key=key, value=value, timestamp=None)
            if n % SEND_BATCH == 0:
                for partition, batch in batches.items():
                    sends.append(await self._send_batch(batch, partition))
                batches.clear()
        for partition, batch in batches.items():
            sends.append(await self._send_batch(batch, partition))
        return plans, before, ticks, sends

    async def _send_batch(self, batch: BatchBuilder, partition: int) -> asyncio.Future[Any]:
        """Queue a batch of ticks on its partition; the future says when the broker has it."""
        assert self._producer is not None
        return await self._producer.send_batch(  # type: ignore[no-any-return]
            batch, topics.CRON_TICKS, partition=partition)

    def _count(self, plans: list[tuple[Entry, Plan]], ticks: list[tuple[Tick, str]]) -> None:
        appended = self.clock()
        lags: dict[str, list[float]] = defaultdict(list)
        for tick, _ in ticks:
            lags[tick.schedule.job_type].append(max(0.0, appended - tick.fire_at.timestamp()))
        for job_type, job_lags in lags.items():
            histogram = self.metrics.schedule_fire_lag.labels(job_type)
            for lag in job_lags:
                histogram.observe(lag)
            self.metrics.schedule_fires.labels(job_type).inc(len(job_lags))
        for entry, outcome in plans:
            if outcome.missed or outcome.overlapped:
                job_type = entry.schedule.job_type
                self.metrics.schedule_misfires.labels(job_type).inc(outcome.missed)
                self.metrics.schedule_overlaps.labels(job_type).inc(outcome.overlapped)
                log.info("schedule %s/%s: %d fire time(s) missed (misfire %s), %d skipped "
                         "(overlap %s)", entry.schedule.tenant_id, entry.schedule.id,
                         outcome.missed, entry.schedule.misfire, outcome.overlapped,
                         entry.schedule.overlap)

    async def _save(self) -> bool:
        """The fire states whose ticks are on the broker, in one round trip; False if it
        failed (they are kept, under any newer state of the same schedule handed over
        meanwhile)."""
        unsaved = {partition: states for partition, states in self._unsaved.items() if states}
        if not unsaved:
            return True
        self._unsaved = defaultdict(dict)  # states handed over meanwhile go with the next save
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for partition, states in unsaved.items():
                    pipe.hset(self.state_key(partition), mapping=states)  # type: ignore[arg-type]
                await pipe.execute()
        except Exception as exc:
            for partition, states in unsaved.items():
                newer = self._unsaved[partition]
                self._unsaved[partition] = {**states, **newer}  # a newer state wins
            if not self.redis_outage.failed(exc):
                log.exception("saving %d fire state(s) failed; trying again with the next step",
                              sum(map(len, unsaved.values())))
            return False
        self.redis_outage.succeeded()
        return True

    async def _record_runs(self, ticks: list[tuple[Tick, str]]) -> None:
        emitted_at = repr(round(self.clock(), 3))  # as FiredRun.encode spells it
        key = self.runs.key
        try:
            await self.runs.record_entries(
                [(key(t.schedule.tenant_id, t.schedule.id), t.run_entry(tick_id_, emitted_at))
                 for t, tick_id_ in ticks])
        except Exception as exc:  # history only: the ticks are out and their states saved
            if self.redis_outage.failed(exc):
                log.debug("%d fired run(s) not recorded in the run history: Redis is away",
                          len(ticks))
                return
            log.exception("recording %d fired run(s) in the run history failed", len(ticks))

    async def _previous_active(self, entries: list[Entry], now: datetime | None) -> set[bytes]:
        """Keys of the schedules (with an overlap policy) whose previous run is not done (for
        world-clock schedules, ``now`` None: a run without a status yet is not waited for)."""
        asked = [e for e in entries
                 if e.schedule.overlap != "allow" and e.state.last_fire is not None]
        if not asked:
            return set()
        async with self.redis.pipeline(transaction=False) as pipe:
            for entry in asked:
                assert entry.state.last_fire is not None
                pipe.hget(self.status.key(entry.schedule.job_id_at(entry.state.last_fire)),
                          "state")
            states = await pipe.execute()
        forgotten = now - timedelta(seconds=self.settings.job_status_ttl_s) if now else None
        active = set()
        for entry, state in zip(asked, states, strict=True):
            if state is None:
                # no status yet: its job is still on its way (or was forgotten long ago)
                if forgotten and entry.state.last_fire and entry.state.last_fire > forgotten:
                    active.add(entry.schedule.key)
            elif not JobState.read(state).done:  # a schedule with an overlap policy waits
                active.add(entry.schedule.key)
        return active

    # taking partitions on and handing them over ----------------------------------------------

    async def _take_on(self, partitions: Iterable[int]) -> None:
        """Read these partitions of ``schedules`` from their start, and their fire states."""
        assert self._reader is not None and self._consumer is not None
        partitions = sorted(set(partitions))
        if not partitions:
            return
        self._pending.update(partitions)
        started = time.monotonic()
        # with the collector on: cyclic garbage made meanwhile (fetches, tasks) must not pile
        # up for the minute a million schedules take
        loaded = await self._read_partitions(partitions)
        # what was just loaded lives as long as the partition: keep it out of the collector's
        # full passes (they would walk every schedule, stalling fires for hundreds of ms)
        gc.freeze()
        log.info("ticker took on partitions %s of %s: %d schedule(s) in %.2fs", partitions,
                 topics.SCHEDULES, loaded, time.monotonic() - started)

    async def _read_partitions(self, partitions: list[int]) -> int:
        """:meth:`_take_on`'s reading; returns how many schedules it loaded."""
        assert self._reader is not None and self._consumer is not None
        # each batch parsed as it comes (the next one is fetched meanwhile), its records let go:
        # a million schedules are never held as records and as schedules at once
        by_partition: dict[int, dict[bytes, Schedule | LoadedSchedule | None]] = {
            p: {} for p in partitions}
        ends = dict.fromkeys(partitions, 0)  # the next offset to read after the take-on
        async for records in self._reader.batches(topics.SCHEDULES, partitions):
            latest = by_partition[records[0].partition]
            for record in records:  # compaction may not have run: the last record wins
                schedule = self._decode(record)
                if record.key is not None:
                    latest[record.key] = schedule
            ends[records[0].partition] = records[-1].offset + 1
        now = datetime.fromtimestamp(self.clock(), UTC)
        loaded = 0
        for partition, latest in by_partition.items():
            raw_states = await self.redis.hgetall(self.state_key(partition))
            self.book.own(partition)  # all of it read: from here on nothing awaits until seek
            for key, schedule in latest.items():
                if schedule is not None and schedule.clock == "wall":
                    raw = raw_states.get(key)
                    self.book.put(partition, schedule, FireState.decode(raw) if raw else None, now)
                    loaded += 1
            # the world schedules whose tenants live here, with their states from this hash
            for key, schedule in self.world_defs.items():
                if self._home(schedule.tenant_id) == partition:
                    raw = raw_states.get(key)
                    self.book.put(partition, schedule, FireState.decode(raw) if raw else None, now)
                    self._world_due.add(schedule.tenant_id)
                    loaded += 1
            tp = TopicPartition(topics.SCHEDULES, partition)
            self._next_offset[partition] = ends[partition]
            if tp in self.assignment:
                self._consumer.seek(tp, self._next_offset[partition])
            self._pending.discard(partition)
            gone = [key for key in raw_states
                    if latest.get(key) is None and key not in self.world_defs]
            if gone:  # states of schedules removed while no ticker owned them
                await self.redis.hdel(self.state_key(partition), *gone)
        return loaded

    def _decode(self, record: ConsumerRecord) -> Schedule | LoadedSchedule | None:
        """The schedule a record stores, in the ticker's slim form where it has one; None for a
        removal, or for a record that is no schedule (counted and logged the first time this
        worker reads it, never fatal)."""
        return self._decode_with(
            record, lambda key, value: loaded_schedule(key, value) or schedule_in(key, value))

    def _decode_full(self, record: ConsumerRecord) -> Schedule | None:
        """As :meth:`_decode`, always the model (a world schedule's plan copies it)."""
        return self._decode_with(record, schedule_in)  # type: ignore[return-value]

    def _decode_with(self, record: ConsumerRecord,
                     parse: Callable[[bytes | None, bytes | None], Schedule | LoadedSchedule]
                     ) -> Schedule | LoadedSchedule | None:
        if record.value is None and record.key is not None:
            return None
        try:
            return parse(record.key, record.value)
        except InvalidSchedule as exc:
            position = (record.partition, record.offset)
            if position not in self._invalid_seen:  # a take-on reads it again: said once
                self._invalid_seen.add(position)
                self.metrics.events_invalid.labels(topics.SCHEDULES, exc.reason).inc()
                log.warning("%s[%s]@%s is no schedule, ignored: %s (%s)", record.topic,
                            record.partition, record.offset, exc.reason, str(exc)[:300])
            return None


class _Handover(ConsumerRebalanceListener):
    """Partitions change hands only between steps, with their fire states saved."""

    def __init__(self, ticker: Ticker) -> None:
        self.ticker = ticker

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        self.ticker._loaded = False
        async with self.ticker._step_lock:
            await self.ticker._drain()  # the next owner goes on from these states
            for partition in {tp.partition for tp in revoked}:
                self.ticker._unsaved.pop(partition, None)
                self.ticker.book.forget(partition)
                self.ticker._pending.discard(partition)
                self.ticker._next_offset.pop(partition, None)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        async with self.ticker._step_lock:
            new = {tp.partition for tp in assigned} - self.ticker.book.partitions
            try:
                await self.ticker._take_on(new)
            except Exception:
                # a partition is owned only once all of it is read: one not taken on stays
                # pending and fires nothing; the loop tries again each step
                log.exception("taking on partitions %s of schedules failed; trying again",
                              sorted(new))
        self.ticker._loaded = True
