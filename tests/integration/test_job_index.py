"""The console's job index on the real Redis: kept by the status store's own writes, per tenant
and of every tenant, newest change first, paged, filtered by state, bounded; per-tenant
counters; the jobs changed since a moment."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from unittest import mock

import redis.asyncio as aioredis

from cronbus.clients.redis import job_status
from cronbus.clients.redis.job_index import JobIndex
from cronbus.clients.redis.job_status import JobState, JobStatusStore
from cronbus.streams.jobs import Job


def job(tenant: str, n: int) -> Job:
    return Job(job_id=f"export-{tenant}-{n}", tenant_id=tenant, type="export",
               triggered_by="manual", scheduled_at=datetime.now(UTC))


async def test_the_index_lists_each_tenants_jobs_by_last_change(stack):
    client = aioredis.Redis.from_url(stack.redis.url)
    namespace = f"test-{uuid.uuid4().hex[:8]}"
    try:
        store = JobStatusStore(client, namespace=namespace, ttl_s=60)
        index = JobIndex(client, store, namespace=namespace)
        acme = [job("acme", n) for n in range(7)]
        await store.write_batch([(j, False, 100.0 + n) for n, j in enumerate(acme)], [])
        await store.write_batch([(job("globex", 0), False, 105.5)], [])
        # acme-1 dead-lettered last, acme-2 completed; the rest still active
        await store.write_batch([], [(acme[2].job_id, JobState.COMPLETED, None, 200.0),
                                     (acme[1].job_id, JobState.DEAD_LETTERED, "PermanentError: 400",
                                      201.0)])

        first, next_offset = await index.page("acme", state=None, offset=0, limit=3)
        assert [j["job_id"] for j in first] == ["export-acme-1", "export-acme-2", "export-acme-6"]
        assert next_offset == 3
        rest, end = await index.page("acme", state=None, offset=3, limit=10)
        assert [j["job_id"] for j in rest] == [f"export-acme-{n}" for n in (5, 4, 3, 0)]
        assert end is None
        dead, _ = await index.page("acme", state="dead_lettered", offset=0, limit=10)
        assert [(j["job_id"], j["last_error"]) for j in dead] == [("export-acme-1",
                                                                   "PermanentError: 400")]
        everyone, _ = await index.page(None, state="active", offset=0, limit=2)
        assert [j["job_id"] for j in everyone] == ["export-acme-6", "export-globex-0"]
        assert [j["job_id"] for j in (await index.page("globex", state=None, offset=0,
                                                       limit=10))[0]] == ["export-globex-0"]

        changed = await index.changed_since("acme", 106.0)
        assert [(j["job_id"], j["state"]) for j in changed] == [
            ("export-acme-2", "completed"), ("export-acme-1", "dead_lettered")]
        assert await index.changed_since("globex", 106.0) == []

        # acme: seven begun, two ended; five in an attempt (at t=210, none of them stale)
        assert await index.tenant_counts("acme", ["export", "billing"], now=210.0) == {
            "export": {"active": 5, "completed": 1, "failed": 0, "dead_lettered": 1},
            "billing": {"active": 0, "completed": 0, "failed": 0, "dead_lettered": 0}}
        globex = (await index.tenant_counts("globex", ["export"], now=210.0))["export"]
        assert (globex["active"], globex["completed"]) == (1, 0)
        # an attempt begun long before is a dead worker's: not counted
        assert (await index.tenant_counts("acme", ["export"], now=100_000.0))["export"][
            "active"] == 0
    finally:
        await client.aclose()


async def test_the_index_keeps_only_the_newest_jobs(stack):
    client = aioredis.Redis.from_url(stack.redis.url)
    namespace = f"test-{uuid.uuid4().hex[:8]}"
    try:
        with mock.patch.object(job_status, "_WRITE_BATCH",
                               job_status._WRITE_BATCH.replace(
                                   f"-{job_status.JOB_INDEX_MAX} - 1", "-5 - 1")):
            store = JobStatusStore(client, namespace=namespace, ttl_s=60)
        index = JobIndex(client, store, namespace=namespace)
        await store.write_batch([(job("acme", n), False, 100.0 + n) for n in range(9)], [])
        kept, _ = await index.page("acme", state=None, offset=0, limit=50)
        assert [j["job_id"] for j in kept] == [f"export-acme-{n}" for n in (8, 7, 6, 5, 4)]
        assert await client.ttl(index.index_key("acme")) > 0
    finally:
        await client.aclose()
