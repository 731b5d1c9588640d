"""One invoice-due burst's whole way: broker → debounce → job → GraphQL API → Redis."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, date, datetime
from decimal import Decimal

import redis.asyncio as aioredis

from cronbus.clients.kafka.publisher import EventPublisher
from cronbus.clients.redis.job_status import JobStatusStore
from cronbus.streams import headers, topics
from cronbus.streams.events import InvoiceDue
from cronbus.streams.jobs import Job, job_id_for, window_trigger_ref
from tests.integration.kafka import eventually, read_topic

TENANTS = [f"tenant-{n}" for n in range(5)]


def invoice_due(tenant: str, n: int) -> InvoiceDue:
    return InvoiceDue(
        event_id=f"{tenant}-evt-{n}", tenant_id=tenant, occurred_at=datetime.now(UTC),
        invoice_id=f"INV-{n}", due_date=date(2026, 12, 1), amount=Decimal("99.50"),
    )


async def test_a_burst_for_five_tenants_runs_exactly_five_jobs(stack, api, settings, start_worker):
    start_worker()
    async with EventPublisher(settings.broker_url) as publisher:
        for n in range(20):  # interleaved, as a real burst arrives
            for tenant in TENANTS:
                await publisher.publish(invoice_due(tenant, n))

    calls = await eventually(api.requests, lambda r: len(r) >= 5, timeout_s=30,
                             what="5 downstream calls")
    await asyncio.sleep(settings.debounce_window_s * 2)  # nothing else may follow
    calls = api.requests()

    assert len(calls) == 5
    assert sorted(c["tenant_id"] for c in calls) == TENANTS
    expected_keys = {
        t: job_id_for(t, "invoice-generation", window_trigger_ref(f"{t}-evt-0"))
        for t in TENANTS
    }
    for call in calls:
        assert call["operation"] == "generateInvoice"
        assert call["applied"] is True
        assert call["idempotency_key"] == expected_keys[call["tenant_id"]] == call["job_id"]

    records = await read_topic(settings.broker_url, topics.job_topic("invoice-generation"))
    jobs = [Job.decode(r.value) for r in records]
    assert len(jobs) == 5
    for record, job in zip(records, jobs, strict=True):
        assert record.key == job.tenant_id.encode()
        assert job.covers is not None and job.covers.count == 20
        assert job.covers.first_event_id == f"{job.tenant_id}-evt-0"
        assert job.covers.last_event_id == f"{job.tenant_id}-evt-19"
        assert job.triggered_by == "event"

    client = aioredis.Redis.from_url(settings.redis_url)
    try:
        store = JobStatusStore(client, namespace=settings.redis_namespace, ttl_s=60)
        for tenant, job_id in expected_keys.items():
            status = await store.get(job_id)
            assert status is not None, f"no status for {tenant}'s job"
            assert status["state"] == "completed"
            assert status["attempts"] == 1
            assert status["tenant_id"] == tenant
            assert status["finished_at"] >= status["started_at"]
    finally:
        await client.aclose()


async def test_bad_records_are_kept_with_a_reason_and_the_worker_goes_on(
    stack, api, settings, start_worker
):
    worker = start_worker()
    valid = invoice_due("tenant-ok", 1)
    async with EventPublisher(settings.broker_url) as publisher:
        await publisher.publish_raw(topics.INVOICE_DUE, b"{not json", key=b"tenant-x")
        no_tenant = json.loads(valid.model_dump_json())
        del no_tenant["tenant_id"]
        await publisher.publish_raw(topics.INVOICE_DUE, json.dumps(no_tenant).encode(), key=b"t")
        await publisher.publish(valid)

    calls = await eventually(api.requests, lambda r: len(r) >= 1, timeout_s=30,
                             what="the valid event's job")
    assert [c["tenant_id"] for c in calls] == ["tenant-ok"]

    invalid = await read_topic(settings.broker_url, topics.EVENTS_INVALID)
    kept = {r.value: headers.decode(r.headers) for r in invalid}  # partitions differ: no order
    assert set(kept) == {b"{not json", json.dumps(no_tenant).encode()}
    assert kept[b"{not json"][headers.REASON] == "not_json"
    missing = kept[json.dumps(no_tenant).encode()]
    assert missing[headers.REASON] == "missing_field"
    assert "tenant_id" in missing[headers.DETAIL]
    for h in kept.values():
        assert h[headers.SOURCE_TOPIC] == topics.INVOICE_DUE
        assert int(h[headers.SOURCE_OFFSET]) >= 0

    exposition = worker.metrics_text()
    assert 'cronbus_events_invalid_total{reason="not_json",topic="invoice-due"} 1.0' in exposition
    assert 'cronbus_events_invalid_total{reason="missing_field",topic="invoice-due"} 1.0' in exposition
    log = worker.process.log_path.read_text()
    assert "not_json" in log and "missing field(s): tenant_id" in log
    assert worker.process.alive()
