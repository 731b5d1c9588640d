"""The processor emits a job's outcome notice after the outcome is kept, once per outcome: a
broker refusing it makes the record be tried again, and the redelivered record (its job found
completed) emits the very same notice. Status store, broker and API are fakes here (the real
ones in tests/integration/test_exports.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError

from cronbus.agents.processing.handlers import HandlerServices, JobCannotSucceed, JobContext
from cronbus.agents.processing.priority_slots import PrioritySlots
from cronbus.agents.processing.processor import Outcome, Processor
from cronbus.agents.processing.retry_policy import RetryPolicy
from cronbus.streams import topics
from cronbus.streams.catalog import Catalog, JobType
from cronbus.streams.jobs import Job, JobState
from cronbus.streams.metrics import Metrics
from cronbus.streams.outcomes import Notify
from cronbus.streams.settings import load_settings
from tests.seeds import SEEDS

NOW = datetime(2026, 3, 28, 12, 0, tzinfo=UTC)


class Status:
    """Job status in a dict, as the Redis store keeps it."""

    def __init__(self) -> None:
        self.jobs: dict[str, dict[str, Any]] = {}

    async def begin_attempt(self, job: Job, *, force: bool = False,
                            record_at: str | None = None) -> int:
        record = self.jobs.setdefault(job.job_id, {"attempts": 0})
        if record.get("state") == "completed" and not force:
            return 0
        record.update(state="active", attempts=record["attempts"] + 1)
        return int(record["attempts"])

    async def finish(self, job_id: str, state: JobState, *, error: str | None = None,
                     answer: int | None = None) -> None:
        self.jobs[job_id].update(state=state.value, finished_at=NOW.timestamp())
        if error:
            self.jobs[job_id]["last_error"] = error

    async def get(self, job_id: str) -> dict[str, Any] | None:
        return self.jobs.get(job_id)

    async def finished_steps(self, job_id: str) -> dict[str, Any]:
        return {}

    async def step_finished(self, job_id: str, step: str, result: Any) -> None:
        pass

    async def set_result(self, job_id: str, result: dict[str, Any]) -> None:
        self.jobs[job_id].setdefault("result", {}).update(result)


class Gate:
    is_open = True

    async def wait_open(self) -> None:
        pass

    def breaker_open(self) -> bool:
        return False


@dataclass
class Record:
    topic: str
    value: bytes
    partition: int = 0
    offset: int = 0
    key: bytes | None = b"acme"
    headers: Any = ()


def processor(handler: Any, status: Status, emitted: list[Job], refusals: int = 0) -> Processor:
    left = [refusals]

    async def emit(job: Job) -> None:
        if left[0] > 0:
            left[0] -= 1
            raise KafkaConnectionError("the broker is away")
        emitted.append(job)

    async def keep(*_: Any, **__: Any) -> None:
        pass

    spec = JobType("export", handler=handler)
    catalog = Catalog.of([spec, SEEDS["outcome-webhook"]])
    services = HandlerServices(steps=status, emit_job=emit, schedules=None,  # type: ignore[arg-type]
                               cache=None, catalog=catalog, settings=load_settings())
    client = type("Client", (), {"service": "api"})()
    return Processor(spec, client=client, status=status, gate=Gate(),  # type: ignore[arg-type]
                     keep=keep, handlers=services,  # type: ignore[arg-type]
                     slots=PrioritySlots(1), metrics=Metrics(), alerts=None,
                     policy=RetryPolicy(retries=0))


def record_of(notify: Notify) -> Record:
    job = Job(job_id="export-1", tenant_id="acme", type="export", triggered_by="cron",
              scheduled_at=NOW, payload={"schedule_id": "monthly"}, notify=notify)
    return Record(topics.job_topic("export"), job.encode())


async def exported(job: Job, ctx: JobContext) -> None:
    await ctx.result(export_id="exp-1")


async def test_a_notice_the_broker_refused_is_emitted_when_the_record_is_tried_again():
    status, emitted = Status(), []
    runs = processor(exported, status, emitted, refusals=1)
    record = record_of(Notify(webhook_url="https://hooks.example.com/h"))
    with pytest.raises(KafkaConnectionError):
        await runs.process(record)
    assert status.jobs["export-1"]["state"] == "completed" and emitted == []  # the job is done
    assert await runs.process(record) == Outcome.SKIPPED  # tried again: found completed
    [sent] = emitted
    assert sent.type == "outcome-webhook" and sent.payload["notice"]["result"] == {
        "export_id": "exp-1"}
    await runs.process(record)  # a redelivery: the same notice job, by id
    assert [j.job_id for j in emitted] == [sent.job_id, sent.job_id]
    assert status.jobs["export-1"]["attempts"] == 1  # the export ran once


async def test_a_job_given_up_on_notifies_failed_and_only_when_asked():
    async def refused(job: Job, ctx: JobContext) -> None:
        raise JobCannotSucceed("export exp-1 failed: bad client", service="api")

    status, emitted = Status(), []
    assert await processor(refused, status, emitted).process(
        record_of(Notify(webhook_url="https://h.example.com/x", on=["completed"]))) \
        == Outcome.DEAD_LETTERED
    assert emitted == []
    status = Status()
    assert await processor(refused, status, emitted).process(
        record_of(Notify(webhook_url="https://h.example.com/x", on=["failed"]))) \
        == Outcome.DEAD_LETTERED
    [sent] = emitted
    assert sent.payload["notice"]["outcome"] == "failed"
    assert "export exp-1 failed: bad client" in sent.payload["notice"]["error"]
