"""Each debounce policy's timing on real topics, and a window surviving a kill -9."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import UTC, date, datetime

from cronbus.clients.kafka.publisher import EventPublisher
from cronbus.streams import topics
from cronbus.streams.events import CronTick, ExportRequested, InvoiceDue
from cronbus.streams.jobs import Job
from tests.integration.kafka import read_topic


def invoice(tenant: str, n: int) -> InvoiceDue:
    return InvoiceDue(event_id=f"{tenant}-{n}", tenant_id=tenant, occurred_at=datetime.now(UTC),
                      invoice_id=f"INV-{n}", due_date=date(2026, 12, 1), amount=1)


async def jobs_on(settings, job_type: str) -> list[tuple[float, Job]]:
    """(broker timestamp in seconds, job) for every job on the type's topic."""
    records = await read_topic(settings.broker_url, topics.job_topic(job_type), timeout_s=5)
    return [(r.timestamp / 1000, Job.decode(r.value)) for r in records]


def debounce_outcomes(worker, job_type: str) -> dict[str, float]:
    """cronbus_debounce_events_total of one job type, by outcome, as the worker exports it."""
    pattern = rf'^cronbus_debounce_events_total\{{job_type="{job_type}",outcome="(\w+)"\}} (\S+)$'
    return {m.group(1): float(m.group(2))
            for m in re.finditer(pattern, worker.metrics_text(), re.MULTILINE)}


async def test_leading_fires_at_once_and_suppresses_the_cooldown(settings, start_worker):
    worker = start_worker(debounce_policies="export=leading:4")
    async with EventPublisher(settings.broker_url) as publisher:
        sent_at = time.time()
        for n in range(5):
            await publisher.publish(ExportRequested(
                event_id=f"x{n}", tenant_id="acme", occurred_at=datetime.now(UTC), export_id=f"{n}"
            ))
        await publisher.flush()
        await asyncio.sleep(5)  # past the cooldown: the next event fires again
        await publisher.publish(ExportRequested(
            event_id="x-late", tenant_id="acme", occurred_at=datetime.now(UTC), export_id="late"
        ))
    await asyncio.sleep(2)
    jobs = await jobs_on(settings, "export")
    assert [job.covers.first_event_id for _, job in jobs] == ["x0", "x-late"]
    assert jobs[0][0] - sent_at < 2.0, "a leading job fires at once, not after the window"
    # each event counted once: two opened a window (and fired), four came in the cooldown
    assert debounce_outcomes(worker, "export") == {
        "opened": 2, "joined": 0, "immediate": 0, "suppressed": 4}


async def test_trailing_with_max_wait_fires_while_events_keep_coming(settings, start_worker):
    worker = start_worker(debounce_policies="invoice-generation=trailing:1.5:4")
    async with EventPublisher(settings.broker_url) as publisher:
        first_at = time.time()
        for n in range(16):  # an event every 0.5 s for 8 s: never quiet for 1.5 s
            await publisher.publish(invoice("busy", n))
            await publisher.flush()
            await asyncio.sleep(0.5)
    await asyncio.sleep(3)
    jobs = await jobs_on(settings, "invoice-generation")
    assert len(jobs) >= 2
    fired_at, first = jobs[0]
    assert 3.5 <= fired_at - first_at <= 5.5, "the first job fires at max wait"
    assert first.covers.first_event_id == "busy-0"
    covered = [job.covers.count for _, job in jobs]
    assert sum(covered) == 16, "every event is covered by exactly one job"
    # each event counted once: one opened each job's window, the others joined one
    assert debounce_outcomes(worker, "invoice-generation") == {
        "opened": len(jobs), "joined": 16 - len(jobs), "immediate": 0, "suppressed": 0}


async def test_a_cron_tick_becomes_its_job_at_once(settings, start_worker):
    start_worker()
    fire_at = datetime(2026, 11, 23, 2, 30, tzinfo=UTC)
    async with EventPublisher(settings.broker_url) as publisher:
        for copy in range(2):  # the same tick twice, as a failover might send it
            await publisher.publish(CronTick(
                event_id=f"tick-{copy}", tenant_id="acme", occurred_at=datetime.now(UTC),
                schedule_id="nightly-sync", job_type="bank-sync", fire_at=fire_at,
            ))
    await asyncio.sleep(2)
    jobs = await jobs_on(settings, "bank-sync")
    assert len({job.job_id for _, job in jobs}) == 1, "one (schedule, fire time), one job id"
    assert jobs[0][1].triggered_by == "cron" and jobs[0][1].scheduled_at == fire_at


async def test_a_window_open_when_its_worker_is_killed_fires_exactly_once(
    settings, api, start_worker
):
    worker = start_worker("first", debounce_window_s="6")
    async with EventPublisher(settings.broker_url) as publisher:
        for n in range(10):
            await publisher.publish(invoice("survivor", n))
    await asyncio.sleep(1.5)  # the window is in the table's changelog, not yet closed
    worker.kill()
    start_worker("second", debounce_window_s="6")
    await asyncio.sleep(8)

    jobs = await jobs_on(settings, "invoice-generation")
    assert len({job.job_id for _, job in jobs}) == 1
    job = jobs[0][1]
    assert job.covers.first_event_id == "survivor-0" and job.covers.count == 10
    applied = [c for c in api.requests() if c["applied"]]
    assert [c["job_id"] for c in applied] == [job.job_id]
