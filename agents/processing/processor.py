"""One job record's way through a processor: the idempotency check, the downstream call, and
its outcome: completed, retried through a retry topic, or dead-lettered.

The record's key and value are never changed: a retry or a dead letter is the same bytes on
another topic, its story (attempts, error, first and last failure) in headers. An open
circuit is not the job's fault: the job waits at its service's gate, spending no attempt.
Nor is a full rate-limit window: a job over its type's limit for its key is parked on the
rate-limited retry topic until the window has room, its attempts unchanged.

Whatever a record holds, it is decided: a value that is no job of this type (a tombstone,
too large, not JSON) or headers cronbus could not have written (``cronbus-attempts: abc``) is
dead-lettered at once, as :mod:`cronbus.clients.kafka.keeper` can keep it.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import random
import time
from collections.abc import Awaitable
from enum import StrEnum
from typing import Any, Protocol

from pydantic import ValidationError

from cronbus.agents.processing.alerts import Alerts
from cronbus.agents.processing.breaker_gate import ServiceGate
from cronbus.agents.processing.handlers import Handler, HandlerServices, JobContext, failed_in
from cronbus.agents.processing.outcome_notices import notification_jobs
from cronbus.agents.processing.priority_slots import PrioritySlots
from cronbus.agents.processing.retry_policy import (
    BadHeader,
    GiveUp,
    Retry,
    RetryPolicy,
    Story,
    after_failure,
    longest_wait_s,
    story_of,
)
from cronbus.clients.http.downstream import (
    CircuitOpen,
    DownstreamClient,
    DownstreamError,
    PermanentError,
    RetryableError,
)
from cronbus.clients.kafka.keeper import CARRIED_HEADERS_MAX_BYTES, KEEP_MAX_BYTES, Kept, Source
from cronbus.clients.redis.job_status import BatchedJobStatus, JobState, JobStatusStore
from cronbus.clients.redis.rate_limits import Claim, RateLimitWindows
from cronbus.streams import headers, topics
from cronbus.streams.catalog import GraphQLCall, JobType, PayloadError
from cronbus.streams.jobs import Job
from cronbus.streams.metrics import Metrics
from cronbus.streams.outcomes import NotifyOutcome
from cronbus.streams.priorities import Tier, tier_of

log = logging.getLogger(__name__)

TRUE_WORDS = frozenset({"1", "true", "yes"})
# the largest job record run: its retry and dead-letter copies fit whole beside their headers
MAX_JOB_BYTES = KEEP_MAX_BYTES - CARRIED_HEADERS_MAX_BYTES - 8192


class JobRecord(Protocol):
    """What a processor needs of a consumed record (an aiokafka ``ConsumerRecord`` fits)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Any


class Keep(Protocol):
    """Writes a copy of a record with its story (:meth:`RecordKeeper.keep`)."""

    def __call__(self, source: Source, topic: str, key: bytes | None, value: bytes | None, *,
                 story: dict[str, object], carried: Any = (), may_drop: bool = True
                 ) -> Awaitable[Kept]: ...


class Outcome(StrEnum):
    """What became of a job record (``cronbus_jobs_processed_total{outcome}`` but the retry,
    which ``cronbus_jobs_retried_total`` counts)."""

    COMPLETED = "completed"  # the call succeeded
    SKIPPED = "skipped"  # completed before: acknowledged without a call
    RETRY_DUE = "retry_due"  # failed; on a retry topic for its next attempt
    DEAD_LETTERED = "dead_lettered"  # given up: on the dead-letter topic
    INVALID = "invalid"  # no job of this type (or unprocessable): dead-lettered at once
    # over its rate limit: on the rate-limited topic until its window has room (counted by
    # cronbus_jobs_rate_limited_total, not as processed: it is not done)
    RATE_LIMITED = "rate_limited"


# an attempt's answer when the job had completed before
_ALREADY_DONE = object()


@dataclasses.dataclass(frozen=True)
class OverRateLimit:
    """An attempt's answer when the job's rate-limit window had no room: no call was made."""

    due_at: float  # when the window has room (epoch seconds)


class InvalidJob(Exception):
    """The record on a job topic is not a valid job."""


class HandedBack(Exception):
    """The worker is stopping and the job had not started: left uncommitted for the next owner."""


class UnsuccessfulAnswer(PermanentError):
    """The API answered, but its answer does not say the job succeeded."""


class Processor:
    """Runs the records of one job type. ``keep`` writes a retry or dead-letter copy (and waits
    for the ack); ``slots`` bounds the calls in flight across the worker, high-priority jobs
    first."""

    def __init__(
        self, spec: JobType, *, client: DownstreamClient,
        status: JobStatusStore | BatchedJobStatus,
        gate: ServiceGate, keep: Keep, handlers: HandlerServices,
        slots: PrioritySlots, metrics: Metrics,
        alerts: Alerts | None, policy: RetryPolicy, rng: random.Random | None = None,
        rate_limits: RateLimitWindows | None = None,
    ) -> None:
        self.spec = spec
        self.job_type = spec.name
        self.topic = topics.job_topic(spec.name)  # the normal tier; retries are named after it
        self.tier_topics = spec.topics  # every tier's topic, most urgent first
        self.client = client
        self.status = status
        self.gate = gate
        self.keep = keep
        self.handlers = handlers  # what a handler's context reaches the world through
        self.slots = slots
        self.alerts = alerts
        self.policy = dataclasses.replace(
            policy,
            retries=policy.retries if spec.retries is None else spec.retries,
            backoff_s=policy.backoff_s if spec.backoff_s is None else spec.backoff_s,
        )
        self.rate_limit = spec.rate_limit
        if self.rate_limit is not None and rate_limits is None:
            raise ValueError(f"job type {spec.name} has a rate limit: its processor needs the "
                             f"rate-limit windows")
        self.rate_limits = rate_limits
        # a job parked for its rate limit may wait a whole window
        self.longest_wait_s = max(longest_wait_s(self.policy),
                                  self.rate_limit.per_s if self.rate_limit else 0.0)
        self.rate_limited_topic = (topics.rate_limited_topic(self.topic)
                                   if self.rate_limit is not None else None)
        self.rng = rng or random.Random()
        self.retry_topics = {d: topics.retry_topic(self.topic, d) for d in self.policy.tier_delays()}
        self.dead_letter_topic = topics.dead_letter_topic(self.topic)
        # the tier a job without a priority waits in, by the topic it came from: its tier
        # topic's; a retry or rate-limited topic's is its job type's default (named once here)
        default_tier = tier_of(spec.default_priority, ordered=spec.ordered)
        self._topic_tiers: dict[str, Tier] = collections.defaultdict(
            lambda: default_tier,
            {t: topics.tier_of_topic(t) or default_tier for t in self.topics()})
        self._running: dict[str, asyncio.Future[None] | None] = {}
        # set when the worker stops: jobs not started yet are handed back, not begun
        self.stopping = False
        self.busy: set[asyncio.Task[Any]] = set()
        # metric children looked up once: labels() costs more than inc()
        self._outcomes = {o: metrics.jobs_processed.labels(self.job_type, o) for o in Outcome
                          if o not in (Outcome.RETRY_DUE, Outcome.RATE_LIMITED)}
        # a retry is counted as retried, a delay as rate limited
        self._failed = {k: metrics.jobs_failed.labels(self.job_type, k)
                        for k in ("retryable", "permanent")}
        self._retried = metrics.jobs_retried.labels(self.job_type)
        self._rate_limited = metrics.jobs_rate_limited.labels(self.job_type)
        self._dead = metrics.jobs_dead_lettered.labels(self.job_type)
        # read when scraped: an inc() and a dec() a job, each taking the metric's lock, cost more
        self._calls_in_flight = 0
        metrics.jobs_in_flight.labels(self.job_type).set_function(lambda: self._calls_in_flight)
        self._granted = {t: metrics.job_slots_granted.labels(self.job_type, t.value) for t in Tier}

    def topics(self) -> list[str]:
        """The topics this processor consumes: its priority tiers' and its retry topics (the
        tiers of a job type share its retry and dead-letter topics) and, with a rate limit, the
        topic where jobs wait for their window."""
        return [*self.tier_topics, *self.delayed_topics()]

    def delayed_topics(self) -> list[str]:
        """The topics whose jobs are due later: its retry topics and, with a rate limit, the
        one where jobs wait for their window."""
        waiting = [self.rate_limited_topic] if self.rate_limited_topic else []
        return [*self.retry_topics.values(), *waiting]

    def tier(self, record: JobRecord, job: Job) -> Tier:
        """The tier a job waits for a slot in: its priority's; a record written before
        priorities runs at its topic's tier (a retry topic's: its job type's default)."""
        if job.priority is None:
            return self._topic_tiers[record.topic]
        return tier_of(job.priority, ordered=self.spec.ordered)

    def origin(self, record: JobRecord, job: Job | None) -> str:
        """The tier topic a record's job came from, where a replay sends it back: the record's
        own; for a retry, the one its headers name, else the tier of its job's priority."""
        if record.topic in self.tier_topics:
            return record.topic
        named = headers.decode(record.headers).get(headers.ORIGINAL_TOPIC)
        if named is not None and named in self.tier_topics:
            return named
        if job is None:
            return self.topic
        return topics.job_topic_for(self.job_type, job.priority, ordered=self.spec.ordered)

    def due_at(self, record: JobRecord) -> float | None:
        """When a record of a retry topic may run (None: at once; a bad header too, so that it
        is dead-lettered at once), never later than this policy's longest wait from now."""
        try:
            return story_of(headers.decode(record.headers), now=time.time(),
                            longest_wait_s=self.longest_wait_s).due_at
        except BadHeader:
            return None

    async def process(self, record: JobRecord) -> Outcome:
        """Run one record to its outcome and return it. Infrastructure errors (Redis, Kafka)
        propagate: the caller tries the record again later, it is never dropped."""
        story = headers.decode(record.headers)
        try:
            job = self._decode(record)
            past = self._past(record, story)
        except (InvalidJob, BadHeader) as exc:
            await self._dead_letter(record, None, type(exc).__name__, str(exc), attempts=0,
                                    first_failure_at=time.time())
            return self._counted(Outcome.INVALID)
        # the same job twice at once (a duplicate record): the copy waits, then finds it done
        # (the future to wait on made by the first copy that waits: none for a job alone)
        running_jobs = self._running
        while job.job_id in running_jobs:
            running = running_jobs[job.job_id]
            if running is None:
                running = running_jobs[job.job_id] = asyncio.get_running_loop().create_future()
            await asyncio.wait({running})
        running_jobs[job.job_id] = None
        try:
            force = story.get(headers.FORCE, "").lower() in TRUE_WORDS
            if force and record.topic in self.tier_topics and self.spec.handler is not None:
                await self.handlers.steps.forget_steps(job.job_id)  # a forced replay: every step again
            return await self._run(record, job, past, force=force)
        finally:
            waited_on = running_jobs.pop(job.job_id)
            if waited_on is not None:
                waited_on.set_result(None)
            self.busy.discard(asyncio.current_task())  # type: ignore[arg-type]

    async def _run(self, record: JobRecord, job: Job, past: Story, *, force: bool) -> Outcome:
        """Attempt the job until it has an outcome; an outage costs no attempt."""
        while True:
            error = await self._attempt_in_a_slot(job, self.tier(record, job), force=force,
                                                  record_at=_where(record))
            if error is _ALREADY_DONE:
                log.debug("job %s already completed; acknowledged without a call", job.job_id)
                # its notice may not have reached the broker before: the same id, sent once
                await self._notify(job, "completed")
                return self._counted(Outcome.SKIPPED)
            if error is None:
                await self.status.finish(job.job_id, JobState.COMPLETED)
                await self._notify(job, "completed")
                return self._counted(Outcome.COMPLETED)
            if isinstance(error, OverRateLimit):
                # no call was made: no attempt spent; the status already says waiting, and when
                self._rate_limited.inc()
                if self.spec.ordered:  # keep the tenant's order: wait in place, out of a slot
                    await asyncio.sleep(max(0.0, error.due_at - time.time()))
                    continue
                await self._park(record, job, past, error.due_at)
                return Outcome.RATE_LIMITED
            assert isinstance(error, DownstreamError)
            if self._is_outage(error):
                await self._wait_out(job, error)
                continue
            past = past.failed(at=time.time())
            decision = self._decide(error, past)
            if isinstance(decision, GiveUp):
                return await self._give_up(record, job, error, past)
            await self.status.finish(job.job_id, JobState.RETRY_DUE, error=_describe(error),
                                     answer=error.status)
            self._retried.inc()
            log.warning("job %s attempt %d failed (%s); next attempt in %.1fs", job.job_id,
                        past.failures, _describe(error), decision.due_at - time.time())
            if self.spec.ordered:
                # keep the tenant's order: retry in place, holding its later jobs back
                await asyncio.sleep(max(0.0, decision.due_at - time.time()))
                continue
            await self._send_to_retry(record, job, error, past, decision)
            return Outcome.RETRY_DUE

    # the steps of a run, in order -----------------------------------------------------------

    def _past(self, record: JobRecord, story: dict[str, str]) -> Story:
        """What the record says of the job's earlier attempts: nothing on the job topic (a
        replay from the dead letters starts afresh too), its story on a retry topic."""
        if record.topic in self.tier_topics:
            return Story()
        return story_of(story, now=time.time(), longest_wait_s=self.longest_wait_s)

    async def _attempt_in_a_slot(self, job: Job, tier: Tier, *, force: bool,
                                 record_at: str | None = None) -> object:
        """Wait for the service's gate and a slot, then make one attempt: None when it
        succeeded, its :class:`DownstreamError`, :data:`_ALREADY_DONE` for a job completed
        before (acknowledged without a call), or :class:`OverRateLimit` (no call either)."""
        if not self.gate.is_open:
            await self.gate.wait_open()
        slots = self.slots
        # as ``async with slots.take(tier)``, without its object and two coroutines a job
        await slots.acquire(tier)
        try:
            task = asyncio.current_task()
            if self.stopping and task not in self.busy:
                raise HandedBack(job.job_id)
            # from its first call until its outcome is kept, a job is finished, not dropped,
            # by a stopping worker (within the grace time)
            self.busy.add(task)  # type: ignore[arg-type]
            self._granted[tier].inc()
            self._calls_in_flight += 1
            try:
                claim = None
                if self.rate_limit is not None:
                    # a place in the window is taken right before the call, and kept even if
                    # the call fails (the message may have gone out)
                    claim = await self._claim(job, force=force)
                    if claim.done_before:
                        return _ALREADY_DONE
                    if not claim.granted:
                        return OverRateLimit(due_at=time.time() + claim.wait_s)
                attempt = await self.status.begin_attempt(job, force=force, record_at=record_at)
                if attempt == 0:
                    if claim is not None:  # completed meanwhile elsewhere: no call, no place
                        assert self.rate_limits is not None
                        await self.rate_limits.give_back(claim)
                    return _ALREADY_DONE
                return await self._attempt(job, attempt)
            finally:
                self._calls_in_flight -= 1
        finally:
            slots.release()

    async def _claim(self, job: Job, *, force: bool) -> Claim:
        limit, windows = self.rate_limit, self.rate_limits
        assert limit is not None and windows is not None
        store = self.status.store if isinstance(self.status, BatchedJobStatus) else self.status
        return await windows.claim(
            job_type=self.job_type, tenant_id=job.tenant_id,
            key_value=limit.key_of(self.spec.check_payload(job.payload)),
            limit=limit.limit, per_s=limit.per_s, job_id=job.job_id,
            status_key=store.key(job.job_id), force=force,
            reason=f"rate limit: {limit.describe()}")

    def _is_outage(self, error: DownstreamError) -> bool:
        """The service's circuit is open: the outage's fault, not the job's."""
        return isinstance(error, CircuitOpen) or (
            isinstance(error, RetryableError) and self.gate.breaker_open())

    async def _wait_out(self, job: Job, error: DownstreamError) -> None:
        """Wait for the half-open probe, spending no attempt."""
        await self.status.finish(job.job_id, JobState.WAITING, error=_describe(error))
        self.gate.hold()

    def _decide(self, error: DownstreamError, past: Story) -> Retry | GiveUp:
        retryable = isinstance(error, RetryableError)
        self._failed["retryable" if retryable else "permanent"].inc()
        return after_failure(
            self.policy, failures=past.failures, retryable=retryable, now=time.time(),
            retry_after_s=error.retry_after if isinstance(error, RetryableError) else None,
            rng=self.rng,
        )

    async def _give_up(self, record: JobRecord, job: Job, error: DownstreamError,
                       past: Story) -> Outcome:
        await self.status.finish(job.job_id, JobState.DEAD_LETTERED, error=_describe(error),
                                 answer=error.status)
        await self._dead_letter(record, job, type(error).__name__, str(error),
                                attempts=past.failures, first_failure_at=past.first_failure_at)
        await self._notify(job, "failed")
        return self._counted(Outcome.DEAD_LETTERED)

    async def _notify(self, job: Job, outcome: NotifyOutcome) -> None:
        """Emit the notification jobs of ``job``'s final outcome, after the outcome is kept: a
        notice never holds up or changes its job. The broker refusing propagates (the record is
        tried again and finds its job done: the same notice ids, so none is sent twice); a
        notice that cannot be built is logged and dropped (it must never dead-letter its job)."""
        if job.notify is None or not job.notify.wants(outcome):
            return
        try:
            notices = notification_jobs(job, outcome, await self.status.get(job.job_id),
                                        declared=self.handlers.catalog, now=time.time())
        except ValidationError as exc:
            log.error("job %s: its %s notice cannot be built, not sent: %s", job.job_id,
                      outcome, exc)
            return
        for notice_job in notices:
            await self.handlers.emit_job(notice_job)

    async def _send_to_retry(self, record: JobRecord, job: Job, error: DownstreamError,
                             past: Story, decision: Retry) -> None:
        """The same key and value on the retry tier, the story in headers."""
        await self.keep(
            _source(record), self.retry_topics[decision.tier_delay_s], record.key,
            record.value, carried=_carried(record), may_drop=False,
            story={
                headers.ERROR_TYPE: type(error).__name__,
                headers.ERROR: str(error)[:1000],
                headers.ATTEMPTS: past.failures,
                headers.ORIGINAL_TOPIC: self.origin(record, job),
                headers.FIRST_FAILURE_AT: f"{past.first_failure_at:.3f}",
                headers.LAST_FAILURE_AT: f"{time.time():.3f}",
                headers.RETRY_AT: f"{decision.due_at:.3f}",
            },
        )

    async def _park(self, record: JobRecord, job: Job, past: Story, due_at: float) -> None:
        """The same key and value on the rate-limited topic, due when the window has room; the
        attempts (and any earlier failure) carried as they were."""
        assert self.rate_limit is not None and self.rate_limited_topic is not None
        rule = self.rate_limit.describe()
        story: dict[str, object] = {
            headers.ERROR_TYPE: "OverRateLimit",
            headers.ERROR: f"over the rate limit of {self.job_type} ({rule}); due at {due_at:.3f}",
            headers.ATTEMPTS: past.failures,
            headers.ORIGINAL_TOPIC: self.origin(record, job),
            headers.RETRY_AT: f"{due_at:.3f}",
            headers.RATE_LIMITED: rule,
        }
        if past.failures:
            story[headers.FIRST_FAILURE_AT] = f"{past.first_failure_at:.3f}"
            last = headers.decode(record.headers).get(headers.LAST_FAILURE_AT)
            if last:
                story[headers.LAST_FAILURE_AT] = last
        log.debug("%s over its rate limit (%s): due in %.1fs", self.job_type, rule,
                  due_at - time.time())
        await self.keep(_source(record), self.rate_limited_topic, record.key, record.value,
                        carried=_carried(record), may_drop=False, story=story)

    def _counted(self, outcome: Outcome) -> Outcome:
        self._outcomes[outcome].inc()
        return outcome

    async def _run_handler(self, handler: Handler, job: Job, attempt: int
                           ) -> DownstreamError | None:
        """Run the handler from its first unfinished step; any exception is classified."""
        context = JobContext(job, payload=self.spec.check_payload(job.payload), attempt=attempt,
                             client=self.client,
                             finished=await self.handlers.steps.finished_steps(job.job_id),
                             services=self.handlers)
        try:
            await handler(job, context)
        except DownstreamError as exc:
            return exc
        except Exception as exc:  # a handler's defect or surprise: retried, named, never fatal
            log.warning("job %s: handler %s raised %s: %s", job.job_id,
                        getattr(handler, "__name__", handler), type(exc).__name__, exc)
            return failed_in(exc, service=self.client.service)
        return None

    async def dead_letter_defective(self, record: JobRecord, error: BaseException,
                                    tries: int) -> None:
        """Dead-letter a record that failed ``tries`` times for no reason of the outside world
        (a defect met on this record): replayable once fixed, and its partition moves on."""
        await self._dead_letter(record, None, "InternalError",
                                f"{tries} tries failed: {type(error).__name__}: {error}",
                                attempts=0, first_failure_at=time.time())
        self._counted(Outcome.INVALID)

    def _decode(self, record: JobRecord) -> Job:
        if record.value is None:
            raise InvalidJob("the record has no value (a tombstone)")
        if len(record.value) > MAX_JOB_BYTES:
            raise InvalidJob(f"oversize: {len(record.value)} bytes, a job is at most "
                             f"{MAX_JOB_BYTES}")
        try:
            job = Job.decode(record.value)
        except ValidationError as exc:
            raise InvalidJob(f"not a valid job: {exc.errors()[0]['msg']} "
                             f"at {'.'.join(map(str, exc.errors()[0]['loc']))}"[:500]) from None
        if job.type != self.spec.name:
            raise InvalidJob(f"a {job.type} job on {record.topic}")
        if self.spec.payload is not None:
            try:
                self.spec.check_payload(job.payload)
            except PayloadError as exc:
                raise InvalidJob(str(exc)[:500]) from None
        return job

    async def _attempt(self, job: Job, attempt: int) -> DownstreamError | None:
        """Make the call, or run the handler; None when it succeeded, else the classified
        error."""
        if self.spec.handler is not None:
            return await self._run_handler(self.spec.handler, job, attempt)
        call = self.spec.call
        assert call is not None
        try:
            if isinstance(call, GraphQLCall):
                data = await self.client.graphql(call.operation, call.variables(job),
                                                 idempotency_key=job.job_id)
            else:
                data = await self.client.rest(call.method, call.path(job), call.body(job),
                                              idempotency_key=job.job_id)
        except DownstreamError as exc:
            return exc
        if not call.succeeded(data):
            return UnsuccessfulAnswer(f"{self.client.service} answered, but not success: "
                                      f"{str(data)[:200]}", service=self.client.service)
        return None

    async def _dead_letter(
        self, record: JobRecord, job: Job | None, error_type: str, error: str, *,
        attempts: int, first_failure_at: float,
    ) -> None:
        """Keep the record on the dead-letter topic, byte for byte where it can be (a record
        that is no job may be kept reduced, or dropped and counted: :mod:`cronbus.clients.kafka.keeper`),
        the story in its headers."""
        log.error("dead-lettering %s[%s]@%s to %s after %d attempt(s): %s: %s", record.topic,
                  record.partition, record.offset, self.dead_letter_topic, attempts, error_type,
                  error[:300])
        await self.keep(
            _source(record), self.dead_letter_topic, record.key, record.value,
            carried=_carried(record), may_drop=job is None,
            story={
                headers.ERROR_TYPE: error_type,
                headers.ERROR: error[:1000],
                headers.ATTEMPTS: attempts,
                headers.ORIGINAL_TOPIC: self.origin(record, job),
                headers.FIRST_FAILURE_AT: f"{first_failure_at:.3f}",
                headers.LAST_FAILURE_AT: f"{time.time():.3f}",
                # the very record this copy is of (a retry tier's, perhaps)
                headers.SOURCE_TOPIC: record.topic,
                headers.SOURCE_PARTITION: record.partition,
                headers.SOURCE_OFFSET: record.offset,
            },
        )
        self._dead.inc()
        if self.alerts is not None:
            self.alerts.dead_lettered(
                job_type=self.job_type, job_id=job.job_id if job else None,
                tenant_id=job.tenant_id if job else None, topic=self.dead_letter_topic,
                error_type=error_type, attempts=attempts,
            )


# headers cronbus writes itself: replaced on each hop, never doubled
_OWN = headers.ERROR_HEADERS


def _carried(record: JobRecord) -> list[tuple[str, bytes | None]]:
    """The record's other headers (a producer's own, ``cronbus-force``), kept as they came."""
    return [(name, value) for name, value in (record.headers or ()) if name not in _OWN]


def _source(record: JobRecord) -> Source:
    return Source(record.topic, record.partition, record.offset)


def _where(record: JobRecord) -> str:
    """Where a record is (``topic/partition/offset``): the console reads a job's payload there."""
    return f"{record.topic}/{record.partition}/{record.offset}"


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"
