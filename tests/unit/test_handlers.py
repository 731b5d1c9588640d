"""A handler's steps: each runs at most once per job, across attempts and when asked twice at
once; a failed step is not kept. The step store is a dict here (Redis in the integration test)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from cronbus.agents.processing.handlers import HandlerServices, JobContext, failed_in
from cronbus.streams.catalog import PayloadError, UnknownJobType
from cronbus.streams.jobs import Job, job_id_for
from cronbus.streams.settings import load_settings
from tests.seeds import SEEDS

JOB = Job(job_id="j1", tenant_id="acme", type="export", triggered_by="manual",
          scheduled_at=datetime(2026, 12, 1, tzinfo=UTC), payload={})


class Steps:
    def __init__(self) -> None:
        self.kept: dict[str, Any] = {}

    async def finished_steps(self, job_id: str) -> dict[str, Any]:
        return dict(self.kept)

    async def step_finished(self, job_id: str, step: str, result: Any) -> None:
        self.kept[step] = result

    async def forget_steps(self, job_id: str) -> None:
        self.kept.clear()

    async def set_progress(self, job_id: str, progress: dict[str, Any]) -> None:
        self.kept["progress"] = progress


def context(steps: Steps, finished: dict[str, Any] | None = None,
            emitted: list[Job] | None = None, job: Job = JOB) -> JobContext:
    async def emit(job: Job) -> None:
        (emitted if emitted is not None else []).append(job)

    services = HandlerServices(steps=steps, emit_job=emit, schedules=None,  # type: ignore[arg-type]
                               cache=None, catalog=SEEDS, settings=load_settings())
    return JobContext(job, payload=job.payload, attempt=1, client=None,  # type: ignore[arg-type]
                      finished=finished or {}, services=services)


async def test_a_mutation_is_never_answered_from_a_cache():
    with pytest.raises(ValueError, match="step expire: a mutation is never answered from a cache"):
        await context(Steps()).graphql("expire", "\n mutation E { expireEvent(eventId: 1) { id } }",
                                       {}, cached=True)


async def test_a_step_asked_twice_at_once_runs_once_and_is_kept():
    steps, runs = Steps(), []

    async def work() -> int:
        runs.append(1)
        await asyncio.sleep(0.01)
        return 42

    ctx = context(steps)
    assert await asyncio.gather(ctx.step("a", work), ctx.step("a", work)) == [42, 42]
    assert runs == [1] and steps.kept == {"a": 42}
    assert await ctx.step("a", work) == 42 and runs == [1]


async def test_a_step_finished_in_an_earlier_attempt_is_not_run_again():
    async def never() -> int:
        raise AssertionError("ran again")

    ctx = context(Steps(), finished={"a": {"id": 7}})
    assert ctx.done("a") and await ctx.step("a", never) == {"id": 7}


async def test_a_failed_step_is_not_kept_and_runs_again_next_time():
    steps = Steps()

    async def boom() -> int:
        raise RuntimeError("no")

    with pytest.raises(RuntimeError):
        await context(steps).step("a", boom)
    assert steps.kept == {}
    failure = failed_in(RuntimeError("no"), service="api")
    assert str(failure) == "handler raised RuntimeError: no" and failure.service == "api"


async def test_a_child_job_is_emitted_once_under_an_id_from_its_parent_and_ref():
    steps, emitted = Steps(), []
    ctx = context(steps, emitted=emitted)
    first = await ctx.emit("deferred-effect", {"effect_id": "fx"}, ref="fx")
    again = await ctx.emit("deferred-effect", {"effect_id": "fx"}, ref="fx")
    assert first == again and len(emitted) == 1 and emitted[0].triggered_by == "job"


async def test_only_the_system_tenants_jobs_emit_for_other_tenants():
    with pytest.raises(ValueError, match="a job of tenant acme emits only for itself"):
        await context(Steps()).emit("event-expiration", {}, ref="c1", tenant_id="c1")
    emitted: list[Job] = []
    sweep = JOB.model_copy(update={"tenant_id": "system", "type": "event-expiration"})
    child_id = await context(Steps(), emitted=emitted, job=sweep).emit(
        "event-expiration", {}, ref="campaign:c1", tenant_id="c1")
    [child] = emitted
    assert child.tenant_id == "c1" and child.job_id == child_id
    assert child_id == job_id_for("c1", "event-expiration", "j1:campaign:c1")


async def test_a_child_job_must_be_declared_and_fit_its_payload():
    ctx = context(Steps())
    with pytest.raises(UnknownJobType, match="unknown job type 'laundry'"):
        await ctx.emit("laundry", {}, ref="x")
    with pytest.raises(PayloadError, match="days_until_deadline: Input should be greater"):
        await ctx.emit("sars-deadline", {"submission_type": "VAT201", "days_until_deadline": -1},
                       ref="x")
