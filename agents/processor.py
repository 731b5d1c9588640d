"""One job record's way through a processor: the idempotency check, the downstream call, and
its outcome: completed, retried through a retry topic, or dead-lettered.

The record's key and value are never changed: a retry or a dead letter is the same bytes on
another topic, its story (attempts, error, first and last failure) in headers. An open
circuit is not the job's fault: the job waits at its service's gate, spending no attempt.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from pydantic import ValidationError

from agents.alerts import Alerts
from agents.breaker_gate import ServiceGate
from agents.jobs import GraphQLCall, JobSpec
from agents.retry_policy import DeadLetter, RetryPolicy, after_failure
from clients.downstream import (
    CircuitOpen,
    DownstreamClient,
    DownstreamError,
    PermanentError,
    RetryableError,
)
from clients.job_status import BatchedJobStatus, JobState, JobStatusStore
from streams import headers, topics
from streams.jobs import Job
from streams.metrics import Metrics

log = logging.getLogger(__name__)

TRUE_WORDS = frozenset({"1", "true", "yes"})


class JobRecord(Protocol):
    """What a processor needs of a consumed record (an aiokafka ``ConsumerRecord`` fits)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Any


Send = Callable[[str, bytes | None, bytes | None, list[tuple[str, bytes]]], Awaitable[None]]


class InvalidJob(Exception):
    """The record on a job topic is not a valid job."""


class HandedBack(Exception):
    """The worker is stopping and the job had not started: left uncommitted for the next owner."""


class UnsuccessfulAnswer(PermanentError):
    """The API answered, but its answer does not say the job succeeded."""


class Processor:
    """Runs the records of one job type. ``send`` delivers a record (and waits for the ack);
    ``slots`` bounds the calls in flight across the worker."""

    def __init__(
        self, spec: JobSpec, *, client: DownstreamClient,
        status: JobStatusStore | BatchedJobStatus,
        gate: ServiceGate, send: Send, slots: asyncio.Semaphore, metrics: Metrics,
        alerts: Alerts | None, policy: RetryPolicy, rng: random.Random | None = None,
    ) -> None:
        self.spec = spec
        self.job_type = spec.job_type.value
        self.topic = topics.job_topic(spec.job_type)
        self.client = client
        self.status = status
        self.gate = gate
        self.send = send
        self.slots = slots
        self.alerts = alerts
        self.policy = spec.retry or policy
        self.rng = rng or random.Random()
        self.retry_topics = {d: topics.retry_topic(self.topic, d) for d in self.policy.tier_delays()}
        self.dead_letter_topic = topics.dead_letter_topic(self.topic)
        self._running: dict[str, asyncio.Future[None]] = {}
        # set when the worker stops: jobs not started yet are handed back, not begun
        self.stopping = False
        self.busy: set[asyncio.Task[Any]] = set()
        # metric children looked up once: labels() costs more than inc()
        self._outcomes = {o: metrics.jobs_processed.labels(self.job_type, o)
                          for o in ("completed", "dead", "skipped", "invalid")}
        self._failed = {k: metrics.jobs_failed.labels(self.job_type, k)
                        for k in ("retryable", "permanent")}
        self._retried = metrics.jobs_retried.labels(self.job_type)
        self._dead = metrics.jobs_dead_lettered.labels(self.job_type)
        self._in_flight = metrics.jobs_in_flight.labels(self.job_type)

    def topics(self) -> list[str]:
        """The topics this processor consumes: the job topic and its retry tiers."""
        return [self.topic, *self.retry_topics.values()]

    @staticmethod
    def due_at(record: JobRecord) -> float | None:
        """When a record of a retry topic may run (None: at once)."""
        value = headers.decode(record.headers).get(headers.RETRY_AT)
        try:
            return float(value) if value else None
        except ValueError:
            return None

    async def process(self, record: JobRecord) -> str:
        """Run one record to its outcome and return it. Infrastructure errors (Redis, Kafka)
        propagate: the caller tries the record again later, it is never dropped."""
        story = headers.decode(record.headers)
        try:
            job = self._decode(record)
        except InvalidJob as exc:
            await self._dead_letter(record, None, "InvalidJob", str(exc), attempts=0,
                                    first_failure_at=time.time())
            self._outcomes["invalid"].inc()
            return "invalid"
        # the same job twice at once (a duplicate record): the copy waits, then finds it done
        while (running := self._running.get(job.job_id)) is not None:
            await asyncio.wait({running})
        self._running[job.job_id] = asyncio.get_running_loop().create_future()
        try:
            return await self._run(record, job, story)
        finally:
            self._running.pop(job.job_id).set_result(None)
            self.busy.discard(asyncio.current_task())  # type: ignore[arg-type]

    async def _run(self, record: JobRecord, job: Job, story: dict[str, str]) -> str:
        force = story.get(headers.FORCE, "").lower() in TRUE_WORDS
        from_retry = record.topic != self.topic
        # a record on the job topic starts afresh (a replay from the dead letters too)
        failures = int(story.get(headers.ATTEMPTS) or 0) if from_retry else 0
        first_failure = float(story.get(headers.FIRST_FAILURE_AT) or 0) if from_retry else 0.0
        while True:
            await self.gate.wait_open()
            async with self.slots:
                if self.stopping and asyncio.current_task() not in self.busy:
                    raise HandedBack(job.job_id)
                # from its first call until its outcome is kept, a job is finished, not dropped,
                # by a stopping worker (within the grace time)
                self.busy.add(asyncio.current_task())  # type: ignore[arg-type]
                self._in_flight.inc()
                try:
                    attempt = await self.status.begin_attempt(job, force=force)
                    if attempt == 0:
                        log.debug("job %s already completed; acknowledged without a call",
                                  job.job_id)
                        self._outcomes["skipped"].inc()
                        return "skipped"
                    error = await self._attempt(job)
                finally:
                    self._in_flight.dec()
            if error is None:
                await self.status.finish(job.job_id, JobState.COMPLETED)
                self._outcomes["completed"].inc()
                return "completed"
            if isinstance(error, CircuitOpen) or (
                isinstance(error, RetryableError) and self.gate.breaker_open()
            ):
                # the outage, not the job: wait for the half-open probe, spend nothing
                await self.status.finish(job.job_id, JobState.WAITING, error=_describe(error))
                self.gate.hold()
                continue
            failures += 1
            now = time.time()
            first_failure = first_failure or now
            retryable = isinstance(error, RetryableError)
            self._failed["retryable" if retryable else "permanent"].inc()
            decision = after_failure(
                self.policy, failures=failures, retryable=retryable, now=now,
                retry_after_s=error.retry_after if isinstance(error, RetryableError) else None,
                rng=self.rng,
            )
            if isinstance(decision, DeadLetter):
                await self.status.finish(job.job_id, JobState.DEAD, error=_describe(error))
                await self._dead_letter(record, job, type(error).__name__, str(error),
                                        attempts=failures, first_failure_at=first_failure)
                self._outcomes["dead"].inc()
                return "dead"
            await self.status.finish(job.job_id, JobState.FAILED, error=_describe(error))
            self._retried.inc()
            log.warning("job %s attempt %d failed (%s); next attempt in %.1fs", job.job_id,
                        failures, _describe(error), decision.due_at - now)
            if self.spec.ordered:
                # keep the tenant's order: retry in place, holding its later jobs back
                await asyncio.sleep(max(0.0, decision.due_at - time.time()))
                continue
            await self.send(
                self.retry_topics[decision.tier_delay_s], record.key, record.value,
                headers.encode({
                    **_carried(story),
                    headers.ERROR_TYPE: type(error).__name__,
                    headers.ERROR: str(error)[:1000],
                    headers.ATTEMPTS: failures,
                    headers.ORIGINAL_TOPIC: self.topic,
                    headers.FIRST_FAILURE_AT: f"{first_failure:.3f}",
                    headers.LAST_FAILURE_AT: f"{now:.3f}",
                    headers.RETRY_AT: f"{decision.due_at:.3f}",
                }),
            )
            return "retry"

    def _decode(self, record: JobRecord) -> Job:
        if record.value is None:
            raise InvalidJob("the record has no value")
        try:
            job = Job.decode(record.value)
        except ValidationError as exc:
            raise InvalidJob(f"not a valid job: {exc.errors()[0]['msg']} "
                             f"at {'.'.join(map(str, exc.errors()[0]['loc']))}") from None
        if job.type != self.spec.job_type:
            raise InvalidJob(f"a {job.type.value} job on {record.topic}")
        return job

    async def _attempt(self, job: Job) -> DownstreamError | None:
        """Make the call; None when it succeeded, else the classified error."""
        call = self.spec.call
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
        """Keep the record byte for byte on the dead-letter topic, the story in its headers."""
        log.error("dead-lettering %s[%s]@%s to %s after %d attempt(s): %s: %s", record.topic,
                  record.partition, record.offset, self.dead_letter_topic, attempts, error_type,
                  error)
        story = headers.decode(record.headers)
        await self.send(
            self.dead_letter_topic, record.key, record.value,
            headers.encode({
                **_carried(story),
                headers.ERROR_TYPE: error_type,
                headers.ERROR: error[:1000],
                headers.ATTEMPTS: attempts,
                headers.ORIGINAL_TOPIC: self.topic,
                headers.FIRST_FAILURE_AT: f"{first_failure_at:.3f}",
                headers.LAST_FAILURE_AT: f"{time.time():.3f}",
            }),
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


def _carried(story: dict[str, str]) -> dict[str, str]:
    """The record's other headers (a producer's own, ``cronbus-force``), kept as they came."""
    return {name: value for name, value in story.items() if name not in _OWN}


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"
