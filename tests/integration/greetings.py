"""A job type a user declares in a module of their own, as the README shows: an event topic,
a payload model and a handler of several steps (CRONBUS_JOB_MODULES=cronbus.families,
tests.integration.greetings). Nothing of cronbus is edited for it."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from cronbus.agents.processing.handlers import JobContext
from cronbus.streams.catalog import EventType, JobType, always
from cronbus.streams.events import DomainEvent
from cronbus.streams.jobs import Job

RUN_JOB = "mutation Run($input: RunJobInput!) { runJob(input: $input) { jobId applied } }"


class GreetingRequested(DomainEvent):
    type: Literal["greeting-requested"] = "greeting-requested"
    name: str
    times: int = 1


class Greeting(BaseModel):
    name: str = Field(min_length=1)
    times: int = Field(default=1, ge=1, le=5)


async def greet(job: Job, ctx: JobContext) -> None:
    for n in range(ctx.payload.times):
        await ctx.graphql(f"greet:{n}", RUN_JOB, {"input": {
            "tenantId": job.tenant_id, "jobId": job.job_id, "type": job.type,
            "payload": {"hello": ctx.payload.name, "n": n}}})
    await ctx.progress(greeted=ctx.payload.times)


JOB_TYPES = [JobType("greeting", handler=greet, payload=Greeting, debounce="immediate")]
EVENT_TYPES = [EventType("greeting-requested", GreetingRequested, always("greeting"))]
