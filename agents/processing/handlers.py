"""Job handlers: a job type whose work is more than one call is a plain async function given the
job and a :class:`JobContext`, the only way out to the world::

    async def expire_overdue(job: Job, ctx: JobContext) -> None:
        overdue = await ctx.graphql("overdue", OVERDUE, {"campaignId": job.tenant_id})
        for event in overdue["getOverdueEvents"]:
            await ctx.graphql(f"expire:{event['id']}", EXPIRE, {"eventId": event["id"]})

Every call goes through the job type's service (breaker, timeout, error classification,
metrics) exactly as a single-call job's, with ``Idempotency-Key: <job id>:<step>``. A step that
finished is kept with the job's status: run again (a retry, a redelivery after kill -9 or a
rebalance), the handler gets the kept result and nothing is called twice. So a step's name must
say what it does to what (``expire:<event id>``), never a counter of attempts.

A :class:`DownstreamError` a handler lets through is classified as for single calls (a
:class:`JobRejected` is permanent); any other exception is a retryable :class:`HandlerFailed`
naming it, never a crashed worker.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from cronbus.agents.processing.schedule_keeper import Changes, ScheduleKeeper
from cronbus.clients.http.downstream import (
    DownstreamClient,
    DownstreamError,
    PermanentError,
    RetryableError,
)
from cronbus.clients.redis.query_cache import QueryCache
from cronbus.streams.catalog import Catalog
from cronbus.streams.jobs import Job, job_id_for
from cronbus.streams.schedules import parse_schedule
from cronbus.streams.settings import Settings

T = TypeVar("T")

Handler = Callable[[Job, "JobContext"], Awaitable[None]]
EmitJob = Callable[[Job], Awaitable[None]]


# what a handler raises, or catches, to say a call failed for good (dead-lettered at once)
__all__ = ["DownstreamError", "EmitJob", "Handler", "HandlerFailed", "HandlerServices",
           "JobContext", "PermanentError", "RetryableError", "StepStore", "failed_in"]


class HandlerFailed(RetryableError):
    """A handler raised something other than a downstream error (the exception is named)."""


class JobRejected(PermanentError):
    """A handler's verdict that its job can never succeed as it is (input only the handler can
    judge: a bad signature, say): dead-lettered at once, never retried, the error type named
    by its subclass (``BadSignature``). Raise it before any call the job must not make."""


class StepStore(Protocol):
    """Where a job's finished steps are kept (:class:`cronbus.clients.redis.job_status.JobStatusStore`)."""

    async def finished_steps(self, job_id: str) -> dict[str, Any]: ...

    async def step_finished(self, job_id: str, step: str, result: Any) -> None: ...

    async def forget_steps(self, job_id: str) -> None: ...

    async def set_progress(self, job_id: str, progress: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class HandlerServices:
    """What every handler's context reaches the world through: one set per worker."""

    steps: StepStore  # finished steps and progress, kept with the job's status
    emit_job: EmitJob  # child jobs, on their job topics
    schedules: ScheduleKeeper  # the schedules handlers keep in step
    cache: QueryCache | None  # cached query answers (None: nothing is cached)
    catalog: Catalog  # what a child job or a kept schedule may be
    settings: Settings  # read-only


class JobContext:
    """What a handler may do: call its service, run a checkpointed step, emit child jobs, keep
    schedules and record progress. Made by the processor for each attempt."""

    def __init__(self, job: Job, *, payload: Any, attempt: int, client: DownstreamClient,
                 finished: dict[str, Any], services: HandlerServices) -> None:
        self.job = job
        self.payload = payload  # the job's payload as its type's model (as given when none)
        self.attempt = attempt  # 1 for the first attempt
        self.settings = services.settings  # read-only: the worker's settings
        self.client = client
        self._services = services
        self._steps = services.steps
        self._finished = finished  # step -> result, from earlier attempts and this one
        self._running: dict[str, asyncio.Future[Any]] = {}

    def idempotency_key(self, step: str) -> str:
        return f"{self.job.job_id}:{step}"

    def done(self, step: str) -> bool:
        """True if ``step`` finished before (in this attempt or an earlier one)."""
        return step in self._finished

    async def graphql(self, step: str, query: str, variables: dict[str, Any], *,
                      cached: bool = False) -> dict[str, Any]:
        """A GraphQL operation as the step ``step``: its ``data``, called at most once. A query
        (never a mutation) may be answered from the tenant's cache (``cached``), kept
        ``CRONBUS_QUERY_CACHE_TTL_S`` and dropped when an event says the tenant's world changed."""
        cache = self._services.cache if cached else None
        if cached and query.lstrip().startswith("mutation"):
            raise ValueError(f"step {step}: a mutation is never answered from a cache")

        async def call() -> dict[str, Any]:
            return await self.client.graphql(query, variables,
                                             idempotency_key=self.idempotency_key(step))

        if cache is None:
            return await self.step(step, call)

        async def read_through() -> dict[str, Any]:
            tenant, service = self.job.tenant_id, self.client.service
            found = await cache.get(tenant, service, query, variables)
            if found.data is not None:
                return found.data
            data = await call()
            await cache.put(tenant, service, query, variables, data, read_in=found.generation)
            return data

        return await self.step(step, read_through)

    async def rest(self, step: str, method: str, path: str, body: Any = None) -> Any:
        """A REST request as the step ``step``: its decoded answer, called at most once."""
        return await self.step(step, lambda: self.client.rest(
            method, path, body, idempotency_key=self.idempotency_key(step)))

    async def step(self, step: str, run: Callable[[], Awaitable[T]]) -> T:
        """Run ``run`` once for this job: its result (JSON) is kept, and returned again
        instead of running it a second time. Steps may run concurrently; the same step asked
        twice at once runs once."""
        if step in self._finished:
            return self._finished[step]  # type: ignore[no-any-return]
        running = self._running.get(step)
        if running is not None:
            return await asyncio.shield(running)  # type: ignore[no-any-return]
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._running[step] = future
        try:
            result = await run()
            await self._steps.step_finished(self.job.job_id, step, result)
            self._finished[step] = result
            future.set_result(result)
            return result
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: a lone step's failure is the caller's to see
            raise
        finally:
            del self._running[step]

    async def each(self, items: Iterable[T], run: Callable[[T], Awaitable[Any]], *,
                   at_once: int) -> None:
        """``run`` each item, at most ``at_once`` at a time; every item is tried, then the first
        failure (a downstream error before any other) is raised."""
        slots = asyncio.Semaphore(max(1, at_once))

        async def one(item: T) -> None:
            async with slots:
                await run(item)

        outcomes = await asyncio.gather(*(one(item) for item in items), return_exceptions=True)
        failures = [o for o in outcomes if isinstance(o, BaseException)]
        if failures:
            raise next((f for f in failures if isinstance(f, DownstreamError)), failures[0])

    async def emit(self, job_type: str, payload: dict[str, Any], *, ref: str,
                   tenant_id: str | None = None) -> str:
        """A child job for this job's tenant (or ``tenant_id``: a system job fanning out to
        tenants); its id comes from this job and ``ref``, so emitting it again (a retry) is the
        same job. Returns the child's id. The type must be declared and the payload fit it."""
        self._services.catalog[job_type].check_payload(payload)
        tenant = tenant_id or self.job.tenant_id
        if tenant != self.job.tenant_id and self.job.tenant_id != self.settings.system_tenant:
            raise ValueError(f"a job of tenant {self.job.tenant_id} emits only for itself; only "
                             f"the system tenant's jobs fan out to others (asked: {tenant})")
        child = Job(job_id=job_id_for(tenant, job_type, f"{self.job.job_id}:{ref}"),
                    tenant_id=tenant, type=job_type, triggered_by="job",
                    scheduled_at=self.job.scheduled_at, payload=payload)

        async def send() -> str:
            await self._services.emit_job(child)
            return child.job_id

        return await self.step(f"emit:{ref}", send)

    async def keep_schedules(self, group: str, definitions: Iterable[dict[str, Any]]) -> Changes:
        """Make this tenant's schedules of ``group`` exactly ``definitions`` (as the schedules
        API takes them, each with its ``id``): new and changed ones are written (a new timing
        from the job's time), those no longer given are removed, unchanged ones keep their
        place in time. Each must name a declared job type whose payload it fits (a fault raises,
        naming the schedule). Declare the job type ``ordered``: one keep per group at a time."""
        wanted = []
        for definition in definitions:
            schedule = parse_schedule({"name": definition.get("id", ""), **definition,
                                       "tenant_id": self.job.tenant_id})
            self._services.catalog[schedule.job_type].check_payload(schedule.payload)
            wanted.append(schedule)
        return await self._services.schedules.keep(self.job.tenant_id, group, wanted,
                                                   now=self.job.scheduled_at)

    async def progress(self, **fields: Any) -> None:
        """Record how far the job is (shown with its status), e.g. ``done=40, total=250``."""
        await self._steps.set_progress(self.job.job_id, fields)


def failed_in(exc: BaseException, *, service: str) -> HandlerFailed:
    """An exception a handler raised, as the retryable failure it counts as."""
    return HandlerFailed(f"handler raised {type(exc).__name__}: {exc}"[:1000], service=service)
