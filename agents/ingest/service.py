"""Ingest: domain events and cron ticks in, validated, routed, debounced per tenant, jobs out.

It reads batches, not records (Faust's per-record stream path tops out near 5,000 records/s
here; the target is 20,000 events/s). One step of the loop:

1. every record of the batch is parsed (:func:`cronbus.streams.events.parse_event`), routed
   (each event type's route, in the catalog) and observed by its tenant's windows (:class:`WindowBook`); a bad
   record is queued for ``events.invalid``;
2. windows that closed fire their jobs (a heap finds them; nothing scans every window);
3. jobs and copies of rejected records are sent and acknowledged by the broker (a record that
   cannot be copied as it came is kept reduced, or counted as dropped: :mod:`cronbus.clients.kafka.keeper`);
4. each tenant whose windows changed gets *one* record on the debounce changelog, sent and
   acknowledged;
5. the batch's offsets are committed.

So a kill -9 anywhere re-reads records whose effect may be partly stored: their events are
recognised by id within a window, and a job sent twice carries the same job id, which the
processor acknowledges without calling downstream again. A window is never lost: it is in the
changelog before the offsets of its events are committed, and its job is on the broker before
the window is closed there. A step that fails (the broker is away) is tried again from the last
commit after a growing pause, never in a tight loop, and its partitions count as stalled in
``/health`` once it failed three times. All topics are assigned by ranges, so one worker owns partition
``p`` of every ingested topic, and with it the windows kept on changelog partition ``p``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

import mode
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.coordinator.assignors.range import RangePartitionAssignor

from cronbus.agents.ingest.debounce import (
    IMMEDIATE,
    DebouncePolicy,
    job_for_window,
    parse_policies,
    parse_policy,
)
from cronbus.agents.ingest.window_book import Closed, WindowBook, decode_windows, encode_windows
from cronbus.agents.ingest.world_clocks import ClockBook
from cronbus.clients.kafka import connect
from cronbus.clients.kafka.fetch_pacing import FetchPacing
from cronbus.clients.kafka.keeper import RecordKeeper, Source
from cronbus.clients.redis.outage import RedisOutage
from cronbus.clients.redis.query_cache import QueryCache
from cronbus.clients.redis.world_clocks import WorldClockView
from cronbus.streams import headers, topics
from cronbus.streams.catalog import Catalog
from cronbus.streams.clocks import WorldClock
from cronbus.streams.events import (
    CronTick,
    DomainEvent,
    InvalidReason,
    Rejection,
    WorldTimeAdvanced,
    parse_event,
)
from cronbus.streams.jobs import Job, job_id_for
from cronbus.streams.keys import partition_of, tenant_key
from cronbus.streams.metrics import Metrics
from cronbus.streams.priorities import DEFAULT as DEFAULT_PRIORITY
from cronbus.streams.priorities import job_priority
from cronbus.streams.schedules import tick_ref
from cronbus.streams.settings import Settings, SettingsError
from cronbus.streams.stalls import Stalls, pause_after

log = logging.getLogger(__name__)

# how long a step waits for records before it closes due windows anyway
FLUSH_INTERVAL_MS = 100
MAX_BATCH_RECORDS = 20_000

def policies_from(settings: Settings, catalog: Catalog) -> dict[str, DebouncePolicy]:
    """Each job type's policy: as its declaration says, overridden by CRONBUS_DEBOUNCE_POLICIES."""
    window = settings.debounce_window_s
    policies = {}
    for job_type in catalog.job_types.values():
        try:
            policies[job_type.name] = parse_policy(job_type.debounce, default_window_s=window)
        except ValueError as exc:
            raise SettingsError(f"job type {job_type.name}: debounce {exc}") from None
    try:
        overrides = parse_policies(settings.debounce_policies, default_window_s=window)
        unknown = sorted(set(overrides) - set(policies))
        if unknown:
            raise ValueError(f"{', '.join(unknown)}: no such job type (known: "
                             f"{', '.join(catalog.names)})")
        policies.update(overrides)
    except ValueError as exc:
        raise SettingsError(
            f"{Settings.env_name('debounce_policies')} is invalid: {exc}; expected "
            f"{Settings.model_fields['debounce_policies'].description}"
        ) from None
    return {
        job_type: dataclasses.replace(policy, max_event_ids=settings.debounce_max_event_ids)
        if policy.mode != "immediate" else policy
        for job_type, policy in policies.items()
    }


def immediate_job(event: DomainEvent, job_type: str, now: float,
                  default_priority: int = DEFAULT_PRIORITY) -> Job:
    """A job of its own for one event; a cron tick's job is named by its schedule and fire time.
    It runs at the priority the event gives (a tick: its schedule's), else at its job type's
    default."""
    priority = job_priority(event.priority, default_priority)
    if isinstance(event, CronTick):
        world = event.clock == "world"  # due at a world time; fired at a wall time
        return Job(
            job_id=job_id_for(event.tenant_id, job_type, tick_ref(event)),
            tenant_id=event.tenant_id, type=job_type,
            triggered_by="manual" if event.trigger == "manual" else "cron",
            scheduled_at=event.occurred_at if world else event.fire_at,
            world_due_at=event.fire_at if world else None,
            payload={"schedule_id": event.schedule_id, **event.payload},
            notify=event.notify, priority=priority,
        )
    fields = event.model_dump(mode="json", exclude={"event_id", "tenant_id", "occurred_at", "type",
                                                    "notify", "priority"})
    return Job(
        job_id=job_id_for(event.tenant_id, job_type, f"event:{event.event_id}"),
        tenant_id=event.tenant_id, type=job_type, triggered_by="event",
        scheduled_at=datetime.fromtimestamp(now, UTC),
        payload={"event_id": event.event_id, "event_type": event.type, **fields},  # type: ignore[attr-defined]
        notify=event.notify,
        priority=priority,
    )


class Ingest(mode.Service):
    """The ingest role: a consumer group over every ingested topic, windows in a changelog."""

    def __init__(self, settings: Settings, catalog: Catalog, topic_maker: connect.TopicMaker,
                 metrics: Metrics, cache: QueryCache | None = None,
                 clock_view: WorldClockView | None = None, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.settings = settings
        self.catalog = catalog
        self.models = catalog.models
        self.cache = cache  # handlers' cached answers, dropped for a tenant whose world changed
        self.cache_dropping = catalog.cache_dropping_topics
        self.topic_maker = topic_maker
        self.metrics = metrics
        self.max_bytes = settings.event_max_bytes
        self.partitions = settings.partitions
        self.policies = policies_from(settings, catalog)
        self.book = WindowBook(self.policies)
        self.changelog = topics.debounce_windows_topic(settings.app_id)
        # tenants' world clocks: a changelog of their own, read by the API through Redis
        self.clocks = ClockBook()
        self.clock_log = topics.world_clocks_topic(settings.app_id)
        self.clock_view = clock_view
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._keeper: RecordKeeper | None = None
        self._reader: connect.PartitionReader | None = None
        self._step_lock = asyncio.Lock()  # a rebalance waits for the step in progress
        # the last step's commit, in flight while the next step reads and sends its jobs
        self._commit: asyncio.Future[None] | None = None
        # the query cache and the world clocks' read side are in Redis: its outage said once
        self.redis_outage = RedisOutage("ingest")
        self._loop_task: asyncio.Task[None] | None = None
        self._stopping = False
        self._restored = False
        self._handovers = 0  # partitions revoked so far: a batch fetched before one is stale
        # per step, sent together before anything is committed
        self._sends: list[asyncio.Future] = []
        self._rejects: list[tuple[ConsumerRecord, Rejection]] = []
        self._outcomes: Counter[tuple[str, str]] = Counter()
        self.stalls = Stalls("ingest", on_change=lambda role, n:
                             metrics.partitions_stalled.labels(role).set(n))
        # per partition, the highest offset already logged: a re-read logs nothing again
        self._logged_upto: dict[tuple[str, int], int] = {}

    # lifecycle -------------------------------------------------------------------------------

    @property
    def assignment(self) -> set[TopicPartition]:
        return set(self._consumer.assignment()) if self._consumer else set()

    @property
    def ready(self) -> bool:
        """Owning partitions with their windows restored."""
        return self._restored and bool(self.assignment)

    async def lag(self) -> dict[TopicPartition, int]:
        """Records on the broker this worker has not read yet, per owned partition."""
        return await connect.unread(self._consumer) if self._consumer else {}

    async def on_start(self) -> None:
        await self.topic_maker.ensure(self.catalog.topics(self.settings.app_id))
        brokers = self.settings.kafka
        # no linger: a step's jobs are all queued before it waits, so they still go together
        self._producer = connect.producer(brokers, linger_ms=0)
        await self._producer.start()
        self._keeper = RecordKeeper(self._producer, self.metrics)
        self._reader = connect.PartitionReader(brokers)
        await self._reader.start()
        self._consumer = connect.group_consumer(
            brokers, group_id=f"{self.settings.app_id}-ingest", topics=self.catalog.event_topics,
            listener=_Handover(self),
            session_timeout_s=self.settings.broker_session_timeout_s,
            rebalance_timeout_s=self.settings.broker_rebalance_timeout_s,
            # partition p of every ingested topic goes to one worker: it owns tenant windows of p
            assignors=(RangePartitionAssignor,),
            # Tansu answers a fetch when its wait ends: short while events flow
            pacing=FetchPacing.of(self.settings),
        )
        await self._consumer.start()
        self._loop_task = asyncio.ensure_future(self._run())

    async def on_stop(self) -> None:
        # finish the step in progress (it commits), then leave the group
        self._stopping = True
        if self._loop_task is not None:
            await self._loop_task
        await self._last_commit_landed("stopping")
        if self._consumer is not None:
            await self._consumer.stop()
        if self._producer is not None:
            await self._producer.stop()
        if self._reader is not None:
            await self._reader.stop()

    async def _run(self) -> None:
        assert self._consumer is not None
        failures = 0  # steps failed in a row
        while not self._stopping:
            if failures:
                await asyncio.sleep(pause_after(failures))
            handovers = self._handovers
            try:
                batch = await self._consumer.getmany(
                    timeout_ms=FLUSH_INTERVAL_MS, max_records=MAX_BATCH_RECORDS)
            except Exception:
                log.exception("fetching records failed; trying again")
                await asyncio.sleep(1)
                continue
            async with self._step_lock:
                if handovers != self._handovers:
                    # fetched before partitions changed hands: whoever owns them now reads
                    # these records again from the last commit (processing them here too
                    # could reopen a window that has fired since)
                    batch = {}
                try:
                    await self._step(batch, time.time())
                except Exception as exc:
                    failures += 1
                    self._step_failed(batch, exc, failures)
                    try:
                        await self._recover()
                    except Exception:
                        log.exception("ingest could not go back to its last commit; trying "
                                      "again after the next pause")
                else:
                    failures = 0
                    if batch:  # a step of no records may not have called Redis at all
                        self.redis_outage.succeeded()
                    for tp, records in batch.items():
                        self.stalls.passed(tp.topic, tp.partition, records[0].offset)

    def _step_failed(self, batch: dict[TopicPartition, list[ConsumerRecord]], exc: Exception,
                     failures: int) -> None:
        """Count the failure against each partition's first record; log it once per record."""
        error = f"{type(exc).__name__}: {exc}"
        first = [self.stalls.failed(tp.topic, tp.partition, records[0].offset, error)
                 for tp, records in batch.items()]
        pause = pause_after(failures)
        if self.redis_outage.failed(exc):
            log.debug("an ingest step waits for Redis; going back to the last commit in %gs",
                      pause)
        elif not first or min(first) == 1:
            log.exception("an ingest step failed; going back to the last commit in %gs", pause)
        else:
            log.debug("an ingest step failed again (%s); going back to the last commit in %gs",
                      error, pause)

    async def _step(self, batch: dict[TopicPartition, list[ConsumerRecord]], now: float) -> None:
        # a batch fetched just before a handover may hold records of partitions this worker no
        # longer owns: their next owner reads them again from the last commit
        owned, assigned = self.book.partitions, self.assignment
        batch = {tp: records for tp, records in batch.items()
                 if tp.partition in owned and tp in assigned}
        await self._drop_cached_answers(batch)
        for tp, records in batch.items():
            self.metrics.events_received.labels(tp.topic).inc(len(records))
            for record in records:
                try:
                    await self._ingest(record, now)
                except Exception as exc:  # one bad record must not stop the stream
                    log.exception("ingest failed on %s[%s]@%s; kept in %s", record.topic,
                                  record.partition, record.offset, topics.EVENTS_INVALID)
                    self._reject(record, Rejection(InvalidReason.INTERNAL_ERROR,
                                                   f"{type(exc).__name__}: {exc}"[:300]))
        for closed in self.book.close_due(now):
            await self._close(closed, now)
        await self._sent()  # jobs first: a window is closed in the changelog only after
        # the last step's commit lands before this step's changelog: the changelog is never
        # more than one step ahead of the commit (a failed commit fails this step: recovery)
        await self._committed()
        for partition, tenant_id, windows in self.book.take_changes():
            value = json.dumps(encode_windows(windows)).encode() if windows else None
            await self._send(self.changelog, tenant_key(tenant_id), value, partition=partition)
        moved = self.clocks.take_changes()
        for partition, clock in moved:
            await self._send(self.clock_log, tenant_key(clock.tenant_id), clock.encode(),
                             partition=partition)
        await self._sent()
        if moved:
            if self.clock_view is not None:  # its read side, once the changelog has it
                await self.clock_view.put_many(clock.as_dict() for _, clock in moved)
            self.metrics.world_clocks.set(self.clocks.count())
        self._count_outcomes()
        if batch:  # its round trip overlaps the next step's reading and sending
            assert self._consumer is not None
            self._commit = asyncio.ensure_future(self._consumer.commit(
                {tp: records[-1].offset + 1 for tp, records in batch.items()}))

    async def _committed(self) -> None:
        """Wait for the last step's commit; raises what it raised."""
        commit, self._commit = self._commit, None
        if commit is not None:
            await commit

    async def _last_commit_landed(self, why: str) -> None:
        """Wait for the last step's commit before ``why``; a failed one is logged: its records
        are read again by whoever reads the partition from its last commit."""
        try:
            await self._committed()
        except Exception as exc:
            log.warning("ingest's last commit failed before %s: %s", why, exc)

    async def _drop_cached_answers(self, batch: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        """Before any job of this step is sent: the tenants of events saying their world changed
        lose their cached answers. Read from the record keys (every event is keyed by its
        tenant), so a record that turns out invalid drops at most an answer too many."""
        if self.cache is None or not self.cache_dropping:
            return
        tenants = {record.key.decode(errors="replace") for tp, records in batch.items()
                   if tp.topic in self.cache_dropping for record in records if record.key}
        if tenants:
            await self.cache.drop(tenants)

    async def _recover(self) -> None:
        """Forget what this worker holds in memory and start again from the last commit."""
        await self._last_commit_landed("recovery")
        self._sends.clear()
        self._rejects.clear()
        self._outcomes.clear()
        assert self._consumer is not None
        owned = self.assignment
        for partition in self.book.partitions:
            self.book.forget(partition)
            self.clocks.forget(partition)
        try:
            await self._restore({tp.partition for tp in owned})
            for tp in owned:
                committed = await self._consumer.committed(tp)
                if committed is None:
                    await self._consumer.seek_to_beginning(tp)
                else:
                    self._consumer.seek(tp, committed)
        except Exception:
            log.exception("recovery failed; the worker restarts ingest from its group")
            raise

    async def _restore(self, partitions: Iterable[int]) -> None:
        started = time.monotonic()
        partitions = list(partitions)
        for partition in partitions:
            self.book.own(partition)

        def window(partition: int, record: ConsumerRecord) -> None:
            windows = (decode_windows(json.loads(record.value), self.policies)
                       if record.value else None)
            self.book.restore(partition, record.key.decode(), windows)

        def clock(partition: int, record: ConsumerRecord) -> None:
            self.clocks.restore(partition, WorldClock.decode(record.value))

        read = (await self._read_changelog(self.changelog, partitions, "debounce window", window)
                + await self._read_changelog(self.clock_log, partitions, "world clock", clock))
        self.metrics.world_clocks.set(self.clocks.count())
        log.info("restored the debounce windows and world clocks of partitions %s from %d "
                 "record(s) in %.2fs", sorted(partitions), read, time.monotonic() - started)

    async def _read_changelog(self, topic: str, partitions: list[int], what: str,
                              restore: Callable[[int, ConsumerRecord], None]) -> int:
        """Restore every record of ``topic``'s ``partitions``; one that holds no ``what`` (not
        written by ingest) is logged and skipped. Returns how many records were read."""
        assert self._reader is not None
        by_partition = await self._reader.read(topic, partitions)
        for partition, records in by_partition.items():
            for record in records:
                try:
                    restore(partition, record)
                except Exception as exc:  # not written by ingest: it holds none
                    log.warning("%s[%s]@%s is not a %s record, ignored: %s: %s", record.topic,
                                record.partition, record.offset, what, type(exc).__name__,
                                str(exc)[:200])
        return sum(map(len, by_partition.values()))

    # one record ------------------------------------------------------------------------------

    async def _ingest(self, record: ConsumerRecord, now: float) -> None:
        parsed = parse_event(record.topic, record.value, max_bytes=self.max_bytes,
                             models=self.models)
        if isinstance(parsed, Rejection):
            self._reject(record, parsed)
            return
        key = tenant_key(parsed.tenant_id)
        if record.key != key or record.partition != partition_of(key, self.partitions):
            # mis-keyed by its producer: re-publish keyed by tenant so the tenant's windows
            # stay on one partition, then drop this copy
            await self._send(record.topic, key, record.value)
            return
        if isinstance(parsed, WorldTimeAdvanced):
            if self.clocks.advance(record.partition, parsed) is None:
                self.metrics.world_clock_ignored.inc()
            else:
                self.metrics.world_clock_advances.inc()
        if isinstance(parsed, CronTick) and parsed.job_type not in self.catalog:
            # its schedule outlived its job type's module: kept for replay, never dropped
            self._reject(record, Rejection(InvalidReason.UNKNOWN_TYPE, (
                f"job type {parsed.job_type!r} is not declared by CRONBUS_JOB_MODULES")))
            return
        job_types = self.catalog.route(record.topic, parsed)
        if not job_types:
            self._outcomes["none", "unrouted"] += 1
            return
        immediate = record.topic == topics.CRON_TICKS  # a tick is already one run
        occurred_at = parsed.occurred_at.isoformat()
        for job_type in job_types:
            policy = IMMEDIATE if immediate else self.policies.get(job_type, IMMEDIATE)
            default = self.catalog[job_type].default_priority
            if policy.mode == "immediate":
                await self._emit(immediate_job(parsed, job_type, now, default))
                self._outcomes[job_type, policy.outcome(opened=False)] += 1
                continue
            opened, fired = self.book.observe(
                record.partition, parsed.tenant_id, job_type, parsed.event_id, occurred_at, now,
                parsed.priority)
            # each event once, here: a window's close adds nothing (the ratio stays within 0..1)
            self._outcomes[job_type, policy.outcome(opened)] += 1
            if fired is not None:  # leading: the first event fires at once
                await self._emit(job_for_window(parsed.tenant_id, job_type, fired, now, default))

    async def _close(self, closed: Closed, now: float) -> None:
        if not closed.window.fired:
            await self._emit(job_for_window(closed.tenant_id, closed.job_type, closed.window, now,
                                            self.catalog[closed.job_type].default_priority))

    def _reject(self, record: ConsumerRecord, rejection: Rejection) -> None:
        """Queue the record for events.invalid (kept with the step's other sends)."""
        self.metrics.events_invalid.labels(record.topic, str(rejection.reason)).inc()
        position = (record.topic, record.partition)
        if record.offset > self._logged_upto.get(position, -1):  # not when read again
            self._logged_upto[position] = record.offset
            log.warning("invalid record %s[%s]@%s: %s (%s)", record.topic, record.partition,
                        record.offset, rejection.reason, rejection.detail)
        self._rejects.append((record, rejection))

    async def _keep_rejects(self) -> None:
        """Keep this step's rejected records in events.invalid, whatever they hold."""
        rejects, self._rejects = self._rejects, []
        assert self._keeper is not None
        await asyncio.gather(*(
            self._keeper.keep(
                Source(record.topic, record.partition, record.offset),
                topics.EVENTS_INVALID, record.key, record.value,
                story={headers.REASON: rejection.reason, headers.DETAIL: rejection.detail[:1000],
                       headers.SOURCE_TOPIC: record.topic,
                       headers.SOURCE_PARTITION: record.partition,
                       headers.SOURCE_OFFSET: record.offset})
            for record, rejection in rejects))

    async def _emit(self, job: Job) -> None:
        await self._send(self.catalog.topic_for(job), tenant_key(job.tenant_id), job.encode())
        self.metrics.jobs_emitted.labels(job.type, job.triggered_by).inc()
        log.debug("job %s (%s) for tenant %s covers %d event(s)", job.job_id, job.type,
                  job.tenant_id, job.covers.count if job.covers else 1)

    # sending ---------------------------------------------------------------------------------

    async def _send(self, topic: str, key: bytes | None, value: bytes | None, *,
                    partition: int | None = None,
                    headers: list[tuple[str, bytes]] | None = None) -> None:
        assert self._producer is not None
        self._sends.append(await self._producer.send(
            topic, value=value, key=key, partition=partition, headers=headers))

    async def _sent(self) -> None:
        """Wait until the broker has every record sent in this step, rejected ones kept."""
        sends, self._sends = self._sends, []
        if sends:
            await asyncio.gather(*sends)
        if self._rejects:
            await self._keep_rejects()

    def _count_outcomes(self) -> None:
        for (job_type, outcome), count in self._outcomes.items():
            self.metrics.debounced.labels(job_type, outcome).inc(count)
        self._outcomes.clear()


class _Handover(ConsumerRebalanceListener):
    """Partitions move between workers only between steps, with their windows."""

    def __init__(self, ingest: Ingest) -> None:
        self.ingest = ingest

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        self.ingest._restored = False
        self.ingest._handovers += 1
        async with self.ingest._step_lock:  # the step in progress commits first
            await self.ingest._last_commit_landed("a handover")
            for partition in {tp.partition for tp in revoked}:
                self.ingest.book.forget(partition)
                self.ingest.clocks.forget(partition)
            self.ingest.stalls.forget({(tp.topic, tp.partition) for tp in revoked})

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        async with self.ingest._step_lock:
            new = {tp.partition for tp in assigned} - self.ingest.book.partitions
            await self.ingest._restore(new)
        self.ingest._restored = True
