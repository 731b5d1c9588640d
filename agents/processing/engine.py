"""The processor engine: owns the consumption of the job topics with raw aiokafka consumers.

Faust's per-message stream path caps far below the throughput a processor needs (about 5,000
messages/s with no work at all, 1,300/s for a naive pipeline), and agent concurrency > 1 can
commit past an unfinished message (faust-streaming #606). So a processor worker consumes its
job topics itself, one consumer group per job type (``<app id>.<job type>``), as a
``mode.Service`` inside the Faust worker:

- ``getmany`` batches; every record becomes a task; at most ``processor_concurrency`` calls
  are in flight across the worker;
- offsets are committed every ``processor_commit_interval_s``, only up to the contiguous
  prefix of finished records of each partition (:mod:`cronbus.agents.processing.offsets`);
- records of a retry topic wait until their due time (a header) without taking a slot; those
  of the rate-limited topic (jobs waiting for their rate-limit window, up to a whole window)
  do not count against the fetch buffer while they wait either, so jobs waiting for one key's
  window never stop the fetching of other keys' jobs;
- while the circuit of a job type's service is open its consumer is paused (``pause()``),
  nothing is fetched, nothing is spent; it resumes when the gate opens;
- a record whose processing fails (Redis or the broker away) is tried again after a growing
  pause, logged once, and counted as a stall once it failed three times; one that keeps
  failing for any other reason (a defect) is dead-lettered after :data:`DEFECT_TRIES`, so no
  record holds its partition back for good.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import random
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import mode
import redis.exceptions
from aiokafka import AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord

from cronbus.agents.processing.alerts import Alerts
from cronbus.agents.processing.breaker_gate import ServiceGate
from cronbus.agents.processing.handlers import HandlerServices
from cronbus.agents.processing.offsets import OffsetTracker
from cronbus.agents.processing.priority_slots import PrioritySlots
from cronbus.agents.processing.processor import HandedBack, Processor
from cronbus.agents.processing.retry_policy import RetryPolicy
from cronbus.agents.processing.schedule_keeper import ScheduleKeeper
from cronbus.clients.http.downstream import DownstreamClient
from cronbus.clients.kafka import connect as kafka_connect
from cronbus.clients.kafka.fetch_pacing import FetchPacing
from cronbus.clients.kafka.keeper import KeepFailed, Kept, RecordKeeper, Source
from cronbus.clients.redis.job_status import BatchedJobStatus, JobStatusStore
from cronbus.clients.redis.kept_schedules import KeptSchedules
from cronbus.clients.redis.outage import RedisOutage, is_redis_outage
from cronbus.clients.redis.query_cache import QueryCache
from cronbus.clients.redis.rate_limits import RateLimitWindows
from cronbus.streams import topics
from cronbus.streams.catalog import Catalog, CatalogError
from cronbus.streams.jobs import Job
from cronbus.streams.keys import tenant_key
from cronbus.streams.metrics import Metrics
from cronbus.streams.priorities import Tier
from cronbus.streams.settings import Settings, SettingsError
from cronbus.streams.stalls import Stalls, pause_after

log = logging.getLogger(__name__)

# how long a read waits while a tier is full: its records are read again as soon as it has room
FULL_TIER_WAIT_MS = 50
FULL_TIER_WAIT_S = FULL_TIER_WAIT_MS / 1000
# the longest a retry topic's fetch waits (delayed_fetch_wait_ms)
DELAYED_FETCH_WAIT_MAX_MS = 500

# failures of the outside world: a record failing so is tried again for as long as it takes
INFRA_ERRORS = (redis.exceptions.RedisError, KafkaError, KeepFailed, OSError, TimeoutError)
# tries after which a record failing for any other reason is dead-lettered as InternalError
DEFECT_TRIES = 5
# how often each breaker's state is shared with the other workers
BREAKER_SYNC_S = 0.25


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, consumer: JobTopicConsumer) -> None:
        self._owner = consumer

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        await self._owner.handed_back(list(revoked))

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        self._owner.joined = True
        log.info("%s: assigned %s", self._owner.group,
                 ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(assigned)) or "nothing")


class JobTopicConsumer:
    """A consumer of some of one job type's topics, in the job type's group: a worker has one
    for the priority tiers (fresh jobs, read as soon as they come) and one for the retry and
    rate-limit topics (jobs due later, read at the idle fetch wait).

    Up to ``max_buffered`` records are taken per tier (a retry topic's count as the normal
    tier's); a tier whose share is full is not read (``getmany`` of the other partitions only),
    so a high-tier record is taken, and waits for a slot ahead of the normal ones, however many
    of those are already waiting.
    """

    def __init__(self, processor: Processor, gate: ServiceGate, settings: Settings,
                 *, reads: Sequence[str], pacing: FetchPacing, max_buffered: int,
                 stalls: Stalls) -> None:
        self.processor = processor
        self.stalls = stalls
        self.gate = gate
        self.group = topics.processor_group(settings.app_id, processor.job_type)
        self.max_buffered = max_buffered
        self.ordered = processor.spec.ordered
        fresh = any(t in processor.tier_topics for t in reads)
        self.consumer = kafka_connect.group_consumer(
            settings.kafka, group_id=self.group, topics=reads,
            listener=_Rebalance(self),
            client_id=f"{self.group}-{'consumer' if fresh else 'retries'}",
            session_timeout_s=settings.broker_session_timeout_s,
            rebalance_timeout_s=settings.broker_rebalance_timeout_s,
            # a record published while a fetch waits is seen when the fetch ends (Tansu answers
            # a fetch only then): this bounds how long a job, a high-tier one too, waits unseen
            pacing=pacing,
        )
        self._tier_of_topic = {t: topics.tier_of_topic(t) or Tier.NORMAL for t in reads}
        self._buffered: collections.Counter[Tier] = collections.Counter()
        self.offsets: OffsetTracker[TopicPartition] = OffsetTracker()
        self.tasks: set[asyncio.Task[None]] = set()
        self.joined = False
        self.committed: dict[TopicPartition, int] = {}
        self._room = asyncio.Event()
        self._last_of_key: dict[tuple[TopicPartition, bytes | None], asyncio.Task[None]] = {}
        self._outstanding = 0
        # every record's job status and rate-limit window is in Redis: its outage is said once
        self.redis_outage = RedisOutage(f"processor {processor.job_type}")
        # set when a record goes through after Redis failed: the records pausing for Redis
        # (up to 10 s each) try again at once instead of holding their partition (and /health's
        # progress) back after it is back
        self._redis_answered = asyncio.Event()

    async def start(self) -> None:
        await self.consumer.start()

    def assignment(self) -> set[TopicPartition]:
        return set(self.consumer.assignment())

    @property
    def outstanding(self) -> int:
        return self._outstanding

    async def fetch_forever(self) -> None:
        while True:
            try:
                await self._fetch()
            except asyncio.CancelledError:
                raise
            except Exception:  # the broker went away, a rebalance failed: keep the worker
                log.exception("%s: fetching failed; trying again in 1s", self.group)
                await asyncio.sleep(1.0)

    async def _fetch(self) -> None:
        consumer = self.consumer
        paused = bool(consumer.paused())
        tiers = set(self._tier_of_topic.values())
        while True:
            full = {t for t in tiers if self._buffered[t] >= self.max_buffered}
            if full == tiers:
                # enough work taken: wait for room instead of fetching (no spinning)
                self._room.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._room.wait(), 1.0)
                continue
            if not self.gate.is_open:
                if not paused:
                    log.warning("%s: pausing consumption while the circuit of %s is open",
                                self.group, self.gate.service)
                paused = True
                consumer.pause(*consumer.assignment())  # new partitions too
                # keep polling (the group expects it) but nothing comes from paused partitions
                batch = await consumer.getmany(timeout_ms=1000)
            else:
                if paused:
                    paused = False
                    consumer.resume(*consumer.paused())
                    log.info("%s: consumption resumed", self.group)
                room = min(self.max_buffered - self._buffered[t] for t in tiers - full)
                if full:  # read the tiers with room only; the rest stays fetched, unread
                    readable = [tp for tp in consumer.assignment()
                                if self._tier_of_topic.get(tp.topic) not in full]
                    if not readable:
                        await asyncio.sleep(FULL_TIER_WAIT_S)
                        continue
                    # briefly: a full tier is read again as soon as it has room
                    batch = await consumer.getmany(*readable, timeout_ms=FULL_TIER_WAIT_MS,
                                                   max_records=room)
                else:
                    batch = await consumer.getmany(timeout_ms=500, max_records=room)
            for tp, records in batch.items():
                for record in records:
                    self._take(tp, record)

    def _take(self, tp: TopicPartition, record: ConsumerRecord) -> None:
        self.offsets.start(tp, record.offset)
        self._outstanding += 1
        tier = self._tier_of_topic.get(tp.topic, Tier.NORMAL)
        self._buffered[tier] += 1
        after = None
        if self.ordered:
            chain = (tp, record.key)
            after = self._last_of_key.get(chain)
        task = asyncio.get_running_loop().create_task(self._run(tp, record, after))
        if self.ordered:
            self._last_of_key[(tp, record.key)] = task
        self.tasks.add(task)
        task.add_done_callback(functools.partial(self._finished_task, tier))

    def _finished_task(self, tier: Tier, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        self._outstanding -= 1
        self._buffered[tier] -= 1
        if self._buffered[tier] < self.max_buffered:
            self._room.set()

    async def _run(self, tp: TopicPartition, record: ConsumerRecord,
                   after: asyncio.Task[None] | None) -> None:
        if after is not None:
            await asyncio.wait({after})
        if tp.topic != self.processor.topic:
            due = self.processor.due_at(record)
            if due is not None and due > time.time():
                if tp.topic == self.processor.rate_limited_topic:
                    await self._wait_aside(due)
                else:
                    await asyncio.sleep(due - time.time())
        waited_for_redis = False
        while True:
            try:
                await self.processor.process(record)
                if self.redis_outage.away:
                    self._redis_answered.set()
                    self._redis_answered = asyncio.Event()  # for the next outage's waiters
                self.redis_outage.succeeded()
                break
            except HandedBack:
                return  # never marked done: the partition's next owner runs it
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                waited_for_redis = is_redis_outage(exc)
                if not await self._failed(tp, record, exc):
                    break
        if self.stalls.passed(tp.topic, tp.partition, record.offset):
            # after a Redis outage every waiting record passes: the outage's end is said once
            log.log(logging.DEBUG if waited_for_redis else logging.INFO,
                    "%s[%s]@%s: decided after all", tp.topic, tp.partition, record.offset)
        self.offsets.finish(tp, record.offset)
        if self.ordered and self._last_of_key.get((tp, record.key)) is asyncio.current_task():
            del self._last_of_key[(tp, record.key)]

    async def _wait_aside(self, due: float) -> None:
        """Wait until ``due`` without holding a place of the fetch buffer: a job waiting for its
        rate-limit window may wait an hour, and many of them must not stop other keys' jobs
        from being fetched."""
        self._outstanding -= 1
        if self._outstanding < self.max_buffered:
            self._room.set()
        try:
            await asyncio.sleep(max(0.0, due - time.time()))
        finally:
            self._outstanding += 1

    async def _failed(self, tp: TopicPartition, record: ConsumerRecord, exc: Exception) -> bool:
        """Count a failed try of ``record``; True to try it again (after a pause), False once it
        is dead-lettered. The log says it once per record, the stall count the rest."""
        error = f"{type(exc).__name__}: {exc}"
        tries = self.stalls.failed(tp.topic, tp.partition, record.offset, error)
        infra = isinstance(exc, INFRA_ERRORS)
        if not infra and tries >= DEFECT_TRIES:
            log.error("%s[%s]@%s failed %d times (%s); dead-lettering it", tp.topic,
                      tp.partition, record.offset, tries, error)
            try:
                await self.processor.dead_letter_defective(record, exc, tries)
                return False
            except Exception as keep_error:  # the broker refused too: go on trying
                error = f"{type(keep_error).__name__}: {keep_error}"
        delay = pause_after(tries)
        if self.redis_outage.failed(exc):
            # said once for the whole processor, not once per record; the pause ends early
            # once another record gets through Redis
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._redis_answered.wait(), delay)
            return True
        if tries == 1:
            log.exception("%s[%s]@%s: processing failed; trying again in %.1fs (logged once "
                          "for this record)", tp.topic, tp.partition, record.offset, delay)
        else:
            log.debug("%s[%s]@%s: try %d failed (%s); again in %.1fs", tp.topic, tp.partition,
                      record.offset, tries, error, delay)
        await asyncio.sleep(delay)
        return True

    async def commit(self) -> None:
        ready = self.offsets.commits()
        if not ready:
            return
        try:
            await self.consumer.commit(ready)
            self.committed.update(ready)
        except Exception as exc:  # a rebalance: the next owner reads those records again
            log.warning("%s: commit of %d partition(s) failed: %s", self.group, len(ready), exc)

    async def lag(self) -> dict[TopicPartition, int]:
        """Records of each owned partition not yet committed (waiting or running)."""
        lags = {}
        for tp in self.consumer.assignment():
            high = self.consumer.highwater(tp)
            done = self.committed.get(tp)
            if done is None:
                done = await self.consumer.committed(tp)
                if done is None:
                    done = await self.consumer.position(tp)
                self.committed[tp] = done
            if high is not None and done is not None:
                lags[tp] = max(0, high - done)
        return lags

    async def handed_back(self, revoked: list[TopicPartition]) -> None:
        """Partitions leave: commit what is done of them, then forget them."""
        if not revoked:
            return
        ready = {tp: off for tp, off in self.offsets.commits().items() if tp in set(revoked)}
        if ready:
            try:
                await self.consumer.commit(ready)
            except Exception as exc:
                log.warning("%s: commit on revoke failed: %s", self.group, exc)
        self.offsets.forget(revoked)
        self.stalls.forget({(tp.topic, tp.partition) for tp in revoked})
        for tp in revoked:
            self.committed.pop(tp, None)

    async def stop(self) -> None:
        await self.consumer.stop()


class RecordSender:
    """The processor's producer: retries and dead letters are copies kept through a
    :class:`RecordKeeper` (a retry or dead letter must be on the broker before the original
    record counts as done)."""

    def __init__(self, settings: Settings, metrics: Metrics, catalog: Catalog) -> None:
        self.settings = settings
        self.metrics = metrics
        self.catalog = catalog  # where each job goes: its type's tier of its priority
        self.producer: AIOKafkaProducer | None = None
        self.keeper: RecordKeeper | None = None

    async def start(self) -> None:
        self.producer = kafka_connect.producer(self.settings.kafka)
        await self.producer.start()
        self.keeper = RecordKeeper(self.producer, self.metrics)

    async def keep(self, source: Source, topic: str, key: bytes | None, value: bytes | None, *,
                   story: dict[str, object], carried: Any = (), may_drop: bool = True) -> Kept:
        assert self.keeper is not None, "the engine has not started"
        return await self.keeper.keep(source, topic, key, value, story=story, carried=carried,
                                      may_drop=may_drop)

    async def emit_job(self, job: Job) -> None:
        """A child job on its job topic (its priority's tier), keyed by its tenant; waits for
        the broker."""
        assert self.producer is not None, "the engine has not started"
        await self.producer.send_and_wait(self.catalog.topic_for(job),
                                          key=tenant_key(job.tenant_id), value=job.encode())

    async def write_schedules(self, records: list[tuple[bytes, bytes | None]]) -> None:
        """Schedules a handler keeps, on the schedules topic; waits for the broker."""
        assert self.producer is not None, "the engine has not started"
        sent = [await self.producer.send(topics.SCHEDULES, key=key, value=value)
                for key, value in records]
        await asyncio.gather(*sent)

    async def stop(self) -> None:
        if self.producer is not None:
            await self.producer.stop()


class JobEngine(mode.Service):
    """Every job type this worker serves, one consumer each, sharing the in-flight limit."""

    def __init__(
        self, settings: Settings, processors: list[Processor], gates: dict[str, ServiceGate],
        *, sender: RecordSender, topic_maker: kafka_connect.TopicMaker,
        written_topics: Sequence[str] = (), **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.written_topics = written_topics  # besides its own: where its handlers write
        self.processors = processors
        self.gates = gates
        self.sender = sender
        self.topic_maker = topic_maker
        self.consumers: list[JobTopicConsumer] = []
        self.stalls = Stalls("processor", on_change=lambda role, n:
                             sender.metrics.partitions_stalled.labels(role).set(n))
        self._loops: list[asyncio.Task[None]] = []

    @property
    def ready(self) -> bool:
        return bool(self.consumers) and all(c.joined for c in self.consumers)

    @property
    def assignment(self) -> set[TopicPartition]:
        """The job and retry topic partitions this worker owns."""
        return set().union(*(c.assignment() for c in self.consumers)) if self.consumers else set()

    async def lag(self) -> dict[TopicPartition, int]:
        """Records not yet committed per owned partition of the job and retry topics."""
        lags: dict[TopicPartition, int] = {}
        for consumer in self.consumers:
            try:
                lags.update(await consumer.lag())
            except Exception as exc:  # a partition mid-handover: skip it this scrape
                log.debug("no lag for %s: %s", consumer.group, exc)
        return lags

    async def on_start(self) -> None:
        # its own topics, and those its handlers write to: child jobs' topics and the schedules
        await self.topic_maker.ensure(sorted(
            {t for p in self.processors for t in (*p.topics(), p.dead_letter_topic)}
            | set(self.written_topics)))
        await self.sender.start()
        # aiokafka clients belong to the running loop: made here, not in __init__
        max_buffered = max(4 * self.settings.processor_concurrency, 1000)
        self.consumers = [
            JobTopicConsumer(p, self.gates[p.spec.service], self.settings, reads=reads,
                             pacing=pacing, max_buffered=max_buffered, stalls=self.stalls)
            for p in self.processors
            # fresh jobs fetched with the busy wait while they flow; jobs due later (retries,
            # rate-limited) with the idle one: a busy fetch's cost grows with its partitions
            for reads, pacing in ((p.tier_topics, FetchPacing.of(self.settings)),
                                  (p.delayed_topics(), FetchPacing.fixed(delayed_fetch_wait_ms(
                                      p, self.settings.fetch_max_wait_ms))))
            if reads
        ]
        # joined all at once: a group join waits on the broker (half the rebalance timeout)
        await asyncio.gather(*(consumer.start() for consumer in self.consumers))
        loop = asyncio.get_running_loop()
        self._loops = [loop.create_task(c.fetch_forever()) for c in self.consumers]
        self._loops.append(loop.create_task(self._commit_forever()))
        self._loops.append(loop.create_task(self._watch_breakers()))

    async def _commit_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.processor_commit_interval_s)
            for consumer in self.consumers:
                await consumer.commit()

    async def _watch_breakers(self) -> None:
        """Share each breaker's state with the other workers through Redis, and notice a
        circuit opened by another (never in a call's path: a slow Redis delays only this)."""
        while True:
            await asyncio.sleep(BREAKER_SYNC_S)
            for gate in self.gates.values():
                try:
                    await gate.sync()
                except Exception as exc:
                    log.debug("breaker state of %s unknown: %s", gate.service, exc)

    async def on_stop(self) -> None:
        """Stop taking records; let the jobs that began their call finish within the grace time;
        hand back the rest uncommitted (their next owner runs them); commit what is done."""
        for task in self._loops:
            task.cancel()
        for processor in self.processors:
            processor.stopping = True
        busy = {t for p in self.processors for t in p.busy}
        waiting = [t for c in self.consumers for t in c.tasks if t not in busy]
        for task in waiting:  # not started: waiting for a slot, a due time or the gate
            task.cancel()
        grace_s = self.settings.shutdown_grace_s
        unfinished = 0
        if busy:
            log.info("processor: waiting up to %gs for %d job(s) in flight", grace_s, len(busy))
            _, pending = await asyncio.wait(busy, timeout=grace_s)
            for task in pending:
                task.cancel()
            unfinished = len(pending)
        left = 0
        for consumer in self.consumers:
            await consumer.commit()
            left += consumer.offsets.pending()
            await consumer.stop()
        if left:
            log.info("processor: %d record(s) handed back uncommitted (%d still running after "
                     "%gs; the rest not started, waiting or failing): their next owner runs them",
                     left, unfinished, grace_s)
        else:
            log.info("processor: every record taken finished and was committed")
        for gate in self.gates.values():
            gate.close()
        await self.sender.stop()


def delayed_fetch_wait_ms(processor: Processor, idle_ms: int) -> int:
    """The fetch wait of a job type's retry and rate-limit topics: half its shortest retry
    delay (a retry is fetched before it is due, and waits in memory), between the idle wait
    and 500 ms, as an idle consumer costs the broker a fetch of all its partitions each time."""
    delays = processor.policy.tier_delays()
    half_shortest_ms = int(min(delays, default=1.0) * 500)
    return max(idle_ms, min(DELAYED_FETCH_WAIT_MAX_MS, half_shortest_ms))


def build_engine(
    settings: Settings, *, clients: Callable[[str], DownstreamClient], status: JobStatusStore,
    metrics: Metrics, alerts: Alerts | None, topic_maker: kafka_connect.TopicMaker,
    catalog: Catalog, kept: KeptSchedules, cache: QueryCache | None = None,
    rate_limits: RateLimitWindows | None = None,
) -> JobEngine:
    """The engine for the job types in ``CRONBUS_JOB_TYPES`` (all the catalog's when empty);
    ``clients`` gives each service's client (a service without settings stops start-up, named);
    ``rate_limits`` keeps the windows of the job types that declare a rate limit."""
    try:
        wanted = catalog.pick(settings.job_types)
    except CatalogError as exc:
        raise SettingsError(f"{Settings.env_name('job_types')}: {exc}") from None
    send = RecordSender(settings, metrics, catalog)
    batched = BatchedJobStatus(status)  # one Redis round trip for the writes of many jobs
    # one gate per service: an open circuit pauses the job types calling that service only
    gates = {
        service: ServiceGate(clients(service).breaker,
                             reset_timeout_s=settings.service(service).breaker_reset_timeout_s)
        for service in sorted({t.service for t in wanted})
    }
    slots = PrioritySlots(settings.processor_concurrency)  # high-priority jobs first
    policy = RetryPolicy(retries=settings.max_retries, backoff_s=settings.retry_backoff_s,
                         max_retry_after_s=settings.retry_after_max_s)
    handlers = HandlerServices(steps=status, emit_job=send.emit_job,
                               schedules=ScheduleKeeper(kept, send.write_schedules), cache=cache,
                               catalog=catalog, settings=settings)
    processors = [
        Processor(t, client=clients(t.service), status=batched, gate=gates[t.service],
                  keep=send.keep, handlers=handlers, slots=slots, metrics=metrics, alerts=alerts,
                  policy=policy, rng=random.Random(), rate_limits=rate_limits)
        for t in wanted
    ]
    return JobEngine(settings, processors, gates, sender=send, topic_maker=topic_maker,
                     written_topics=[*catalog.job_topics(), topics.SCHEDULES])
