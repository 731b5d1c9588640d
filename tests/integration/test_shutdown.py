"""SIGTERM in the middle of a stream of jobs: the worker stops taking records, lets the jobs in
flight finish within CRONBUS_SHUTDOWN_GRACE_S, commits and exits 0; a new worker does the rest.
No job is lost and none is applied twice (the development API counts Idempotency-Keys)."""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, date, datetime
from decimal import Decimal

from cronbus.clients.kafka.publisher import EventPublisher
from cronbus.streams.events import InvoiceDue
from tests.integration.kafka import eventually

JOBS = 40
# one job per event, so every event is a job of its own; two in flight, so that the signal
# finds some jobs running, some fetched and not started, and some not fetched
IMMEDIATE = {"debounce_policies": "invoice-generation=immediate", "processor_concurrency": "2"}


def invoice_due(n: int) -> InvoiceDue:
    return InvoiceDue(event_id=f"evt-{n}", tenant_id=f"tenant-{n % 8}", occurred_at=datetime.now(UTC),
                      invoice_id=f"INV-{n}", due_date=date(2026, 12, 1), amount=Decimal("5.00"))


def applied_keys(api) -> Counter[str]:
    return Counter(r["idempotency_key"] for r in api.requests() if r["status"] == 200 and r["applied"])


async def publish_jobs(settings) -> None:
    async with EventPublisher(settings.broker_url) as publisher:
        for n in range(JOBS):
            await publisher.publish(invoice_due(n))


async def test_sigterm_mid_stream_finishes_in_flight_jobs_and_loses_or_doubles_none(
    stack, api, settings, start_worker
):
    delay_s = 1.0
    api.delay(delay_s)  # a slow API: each call is applied at once and answered a second later
    first = start_worker("first", shutdown_grace_s="15", **IMMEDIATE)
    await publish_jobs(settings)
    await eventually(lambda: sum(applied_keys(api).values()), lambda n: n >= 5, timeout_s=60,
                     what="a few jobs applied before the signal")

    signalled_at, calls_then = time.time(), api.requests()
    exit_code = first.stop()  # SIGTERM, then up to 20 s
    assert exit_code == 0, first.process.log_tail(40)
    # mid-way: calls were waiting for their answers, or jobs were still to start
    in_flight = [r for r in calls_then if r["at"] > signalled_at - delay_s]
    assert in_flight or len(calls_then) < JOBS, "the signal must come mid-way"

    second = start_worker("second", **IMMEDIATE)
    keys = await eventually(lambda: applied_keys(api), lambda k: len(k) >= JOBS, timeout_s=90,
                            what=f"all {JOBS} jobs applied")
    await eventually(lambda: second.is_ready(), bool, timeout_s=10, what="the second worker ready")

    calls = Counter(r["idempotency_key"] for r in api.requests())
    doubled = {key: n for key, n in calls.items() if n > 1}
    assert not doubled, f"jobs called more than once: {doubled}"
    assert len(keys) == JOBS and set(keys.values()) == {1}
    assert {r["job_id"] for r in api.requests()} == set(keys)  # each call carried its job's id


async def test_a_job_longer_than_the_grace_period_is_handed_back_and_applied_once(
    stack, api, settings, start_worker
):
    api.delay(4.0)  # each call is applied at once and answered after 4 s: longer than the grace
    first = start_worker("first", shutdown_grace_s="0.5", **IMMEDIATE)
    async with EventPublisher(settings.broker_url) as publisher:
        for n in range(4):
            await publisher.publish(invoice_due(n))
    await eventually(lambda: len(api.requests()), lambda n: n >= 1, timeout_s=60,
                     what="a call in flight")

    exit_code = first.stop()
    assert exit_code == 0, first.process.log_tail(40)
    answered_before = len(api.requests())

    api.delay(0)
    start_worker("second", **IMMEDIATE)
    # what was cut off is called again under the same Idempotency-Key, which the API recognises
    await eventually(api.requests, lambda calls: any(not r["applied"] for r in calls), timeout_s=90,
                     what="the handed-back job called again")
    keys = await eventually(lambda: applied_keys(api), lambda k: len(k) >= 4, timeout_s=90,
                            what="all 4 jobs applied")
    assert set(keys.values()) == {1}, keys  # applied once each, whatever was repeated
    repeated = [r for r in api.requests() if not r["applied"]]
    assert len(api.requests()) > answered_before
    assert {r["idempotency_key"] for r in repeated} <= set(keys)
