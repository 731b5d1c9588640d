"""Rate-limit windows on the real Redis: exactly ``limit`` places however many claim at once from
two connections, the wait until the window has room, the window sliding, a job completed before
taking no place, tenants and keys apart, and the waiting job's status."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from cronbus.clients.devstack.harness import DEFAULT_REDIS_URL
from cronbus.clients.devstack.redis_server import RedisServer
from cronbus.clients.redis.job_status import JobStatusStore
from cronbus.clients.redis.rate_limits import RateLimitWindows
from cronbus.streams.jobs import JobState
from cronbus.streams.settings import Settings


@pytest.fixture
async def redis_url(tmp_path: Path) -> AsyncIterator[str]:
    server = RedisServer(os.environ.get(Settings.env_name("redis_url"), DEFAULT_REDIS_URL),
                         tmp_path).start()
    try:
        yield server.url
    finally:
        server.stop()


async def test_exactly_the_limit_is_granted_however_many_claim_at_once(redis_url):
    namespace = f"test-{uuid.uuid4().hex[:8]}"
    clients = [aioredis.Redis.from_url(redis_url) for _ in range(2)]
    try:
        # two workers' connections, one window
        windows = [RateLimitWindows(c, namespace=namespace, status_ttl_s=60) for c in clients]
        store = JobStatusStore(clients[0], namespace=namespace, ttl_s=60)

        async def claim(n: int, *, tenant: str = "acme", user: str = "u-a", limit: int = 50,
                        per_s: float = 3600.0):
            return await windows[n % 2].claim(
                job_type="email", tenant_id=tenant, key_value=user, limit=limit, per_s=per_s,
                job_id=f"email-{tenant}-{user}-{n}", status_key=store.key(f"email-{tenant}-{user}-{n}"),
                force=False, reason="rate limit: 50 per 3600s per user_id")

        started = time.time()
        claims = await asyncio.gather(*(claim(n) for n in range(120)))
        granted = [c for c in claims if c.granted]
        assert len(granted) == 50
        refused = [c for c in claims if not c.granted]
        assert len(refused) == 70 and not any(c.done_before for c in refused)
        # the window has room again when its first claim leaves it: about an hour from now
        assert all(3590 <= c.wait_s <= 3600 for c in refused), {c.wait_s for c in refused}

        # a refused job waits: its status says why and until when, no attempt spent
        n = next(n for n, c in enumerate(claims) if not c.granted)
        waiting = await store.get(f"email-acme-u-a-{n}")
        assert waiting is not None
        assert waiting["state"] == "waiting" and waiting["attempts"] == 0
        assert waiting["waiting_for"] == "rate limit: 50 per 3600s per user_id"
        assert waiting["tenant_id"] == "acme" and waiting["type"] == "email"
        assert started + 3590 <= waiting["due_at"] <= time.time() + 3600

        # other users, other tenants: windows of their own
        others = await asyncio.gather(*(claim(n, user="u-b") for n in range(10)),
                                      *(claim(n, tenant="globex") for n in range(10)))
        assert all(c.granted for c in others)

        # a place given back (the job turned out done) is free again: the waiting job takes it,
        # and its status forgets the wait
        await windows[0].give_back(granted[0])
        assert (await claim(n)).granted
        taken = await store.get(f"email-acme-u-a-{n}")
        assert taken is not None and "due_at" not in taken and "waiting_for" not in taken
        assert not (await claim(501)).granted
    finally:
        for client in clients:
            await client.aclose()


async def test_the_window_slides_and_a_completed_job_takes_no_place(redis_url):
    namespace = f"test-{uuid.uuid4().hex[:8]}"
    client = aioredis.Redis.from_url(redis_url)
    try:
        windows = RateLimitWindows(client, namespace=namespace, status_ttl_s=60)
        store = JobStatusStore(client, namespace=namespace, ttl_s=60)

        async def claim(job_id: str, *, force: bool = False):
            return await windows.claim(job_type="push", tenant_id="acme", key_value="u-1",
                                       limit=2, per_s=0.5, job_id=job_id,
                                       status_key=store.key(job_id), force=force, reason="r")

        assert (await claim("p-1")).granted
        await asyncio.sleep(0.2)
        assert (await claim("p-2")).granted
        third = await claim("p-3")
        assert not third.granted
        assert 0.2 <= third.wait_s <= 0.31  # p-1 leaves the window 0.5 s after it was claimed
        await asyncio.sleep(third.wait_s + 0.02)
        assert (await claim("p-3")).granted  # p-1 left: one place
        assert not (await claim("p-4")).granted

        # a job completed before is skipped: no place taken, unless a replay forces it
        await asyncio.sleep(0.6)
        await store.finish("p-done", JobState.COMPLETED)
        skipped = await claim("p-done")
        assert skipped.done_before and not skipped.granted
        assert (await claim("p-5")).granted and (await claim("p-6")).granted
        assert not (await claim("p-done", force=True)).granted  # forced, it counts: full now
    finally:
        await client.aclose()
