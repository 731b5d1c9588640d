"""The processor of one job topic: call downstream, record the outcome, dead-letter what cannot
succeed.

Each job is handled inside its own ``try`` and the agent takes one job at a time per
partition, so an offset is never committed past an unfinished job (faust-streaming #606).
Retries happen in place with exponential backoff; an open circuit waits without using an
attempt.
"""

from __future__ import annotations

import asyncio
import logging
import time

import faust
from faust.types import Message
from pydantic import ValidationError

from agents.alerts import Alerts
from agents.backoff import backoff_delay
from agents.jobs import JobCall
from clients.downstream import CircuitOpen, DownstreamClient, DownstreamError, RetryableError
from clients.job_status import JobState, JobStatusStore
from streams import headers, topics
from streams.app import AppTopics
from streams.jobs import Job
from streams.metrics import Metrics
from streams.settings import Settings

log = logging.getLogger(__name__)


class Processor:
    def __init__(
        self, app: faust.App, app_topics: AppTopics, call: JobCall, *,
        client: DownstreamClient, status: JobStatusStore, metrics: Metrics, settings: Settings,
        alerts: Alerts | None = None,
    ) -> None:
        self.app = app
        self.topics = app_topics
        self.call = call
        self.client = client
        self.status = status
        self.metrics = metrics
        self.alerts = alerts
        self.max_attempts = settings.max_attempts
        self.backoff_s = settings.retry_backoff_s
        self.breaker_wait_s = settings.breaker_reset_timeout_s
        self.topic = topics.job_topic(call.job_type)

    def register(self) -> None:
        self.app.agent(self.topics[self.topic], name=f"process-{self.call.job_type}")(self._consume)

    async def _consume(self, stream: faust.StreamT) -> None:
        async for event in stream.events():
            message = event.message
            try:
                await self.handle(message)
            except Exception as exc:  # keep the job, keep the worker
                log.exception("processing %s[%s]@%s failed", message.topic, message.partition,
                              message.offset)
                await self._dead_letter(message, exc, attempts=0, first_failure_at=time.time())

    async def handle(self, message: Message) -> None:
        job_type = self.call.job_type.value
        try:
            job = Job.decode(message.value)
        except ValidationError as exc:
            self.metrics.jobs_processed.labels(job_type, "invalid").inc()
            await self._dead_letter(message, exc, attempts=0, first_failure_at=time.time())
            return
        in_flight = self.metrics.jobs_in_flight.labels(job_type)
        in_flight.inc()
        try:
            outcome = await self._run(job, message)
        finally:
            in_flight.dec()
        self.metrics.jobs_processed.labels(job_type, outcome).inc()

    async def _run(self, job: Job, message: Message) -> str:
        first_failure_at: float | None = None
        failures = 0
        while True:
            attempt = await self.status.begin_attempt(job)
            if attempt == 0:
                log.info("job %s already completed; acknowledged without a call", job.job_id)
                return "skipped"
            try:
                await self.client.graphql(
                    self.call.operation, self.call.variables(job), idempotency_key=job.job_id
                )
            except CircuitOpen:
                # the outage is not the job's fault: wait for the half-open probe, spend nothing
                await self.status.finish(job.job_id, JobState.WAITING, error="circuit open")
                await asyncio.sleep(self.breaker_wait_s / 4)
                continue
            except DownstreamError as exc:
                failures += 1
                first_failure_at = first_failure_at or time.time()
                error = f"{type(exc).__name__}: {exc}"
                retryable = isinstance(exc, RetryableError)
                self.metrics.jobs_failed.labels(
                    job.type.value, "retryable" if retryable else "permanent").inc()
                if retryable and failures < self.max_attempts:
                    self.metrics.jobs_retried.labels(job.type.value).inc()
                    delay = exc.retry_after or backoff_delay(failures, base_s=self.backoff_s)
                    log.warning("job %s attempt %d failed (%s); retrying in %.1fs",
                                job.job_id, failures, error, delay)
                    await self.status.finish(job.job_id, JobState.FAILED, error=error)
                    await asyncio.sleep(delay)
                    continue
                await self.status.finish(job.job_id, JobState.DEAD, error=error)
                await self._dead_letter(message, exc, attempts=failures,
                                        first_failure_at=first_failure_at)
                return "dead"
            await self.status.finish(job.job_id, JobState.COMPLETED)
            log.info("job %s completed for tenant %s (attempt %d)", job.job_id, job.tenant_id,
                     attempt)
            return "completed"

    async def _dead_letter(
        self, message: Message, exc: BaseException, *, attempts: int, first_failure_at: float
    ) -> None:
        """Keep the record byte for byte on the dead-letter topic, the story in its headers."""
        destination = topics.dead_letter_topic(self.topic)
        log.error("dead-lettering %s[%s]@%s to %s: %s: %s", message.topic, message.partition,
                  message.offset, destination, type(exc).__name__, exc)
        delivery = await self.topics[destination].send(
            key=message.key,
            value=message.value,
            headers=headers.encode({
                headers.ERROR_TYPE: type(exc).__name__,
                headers.ERROR: str(exc)[:1000],
                headers.ATTEMPTS: attempts,
                headers.ORIGINAL_TOPIC: self.topic,
                headers.FIRST_FAILURE_AT: f"{first_failure_at:.3f}",
                headers.LAST_FAILURE_AT: f"{time.time():.3f}",
            }),
        )
        await delivery
        job_type = self.call.job_type.value
        self.metrics.jobs_dead_lettered.labels(job_type).inc()
        if self.alerts is not None:
            job_id = tenant_id = None
            try:
                job = Job.decode(message.value)
                job_id, tenant_id = job.job_id, job.tenant_id
            except ValidationError:
                pass
            self.alerts.dead_lettered(job_type=job_type, job_id=job_id, tenant_id=tenant_id,
                                      topic=destination, error_type=type(exc).__name__,
                                      attempts=attempts)
