"""Handlers' cached query answers on the real Redis, broker and world API: a campaign's
settlements are read from the world API once and then answered from the cache, until an
entity-modified event for the campaign drops its answers; answers go stale after their time."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import httpx
import redis.asyncio as aioredis

from cronbus.clients.kafka.publisher import EventPublisher
from cronbus.clients.redis.query_cache import QueryCache
from cronbus.streams.events import EntityModified, WorldTimeAdvanced
from cronbus.streams.jobs import job_id_for
from cronbus.streams.metrics import Metrics
from tests.integration.kafka import eventually

CAMPAIGN = "c-cache"


def reads(world) -> int:
    state = httpx.get(f"{world.control_url}/state", timeout=30).json()
    return state["reads"].get(f"read-settlements:{CAMPAIGN}", 0)


def cache_counts(worker) -> dict[str, float]:
    found = re.findall(r'cronbus_query_cache_total\{outcome="(\w+)",service="world"\} (\S+)',
                       worker.metrics_text())
    return {outcome: float(n) for outcome, n in found}


async def test_answers_are_cached_per_campaign_until_an_entity_of_it_changes(
    stack, settings, start_worker
):
    world = stack.world
    now = datetime.now(UTC)
    httpx.post(f"{world.control_url}/seed", timeout=30, json={
        "campaigns": [{"id": CAMPAIGN, "worldTime": now.isoformat()}],
        "settlements": [{"id": "s1", "campaignId": CAMPAIGN, "level": 1}]}).raise_for_status()
    worker = start_worker(roles=("ingest", "processor"), job_types="settlement-growth",
                          debounce_policies="settlement-growth=immediate",
                          web_api_tokens=f"tok-campaign:{CAMPAIGN}")

    async def advance(event_id: str, event: type = WorldTimeAdvanced, **fields: object) -> None:
        async with EventPublisher(settings.broker_url) as publisher:
            await publisher.publish(event(event_id=event_id, tenant_id=CAMPAIGN,
                                          occurred_at=datetime.now(UTC), **fields))
            await publisher.flush()
        job_id = job_id_for(CAMPAIGN, "settlement-growth", f"event:{event_id}")
        await eventually(lambda: httpx.get(f"{worker.base_url}/jobs/{job_id}", timeout=5,
                                           headers={"Authorization": "Bearer tok-campaign"}),
                         lambda r: r.status_code == 200 and r.json()["state"] == "completed",
                         timeout_s=60, what=f"the job of {event_id} completed")

    await advance("a1", world_time=now)
    assert reads(world) == 1
    await advance("a2", world_time=now)  # answered from the cache
    assert reads(world) == 1 and cache_counts(worker) == {"hit": 1.0, "miss": 1.0}
    await advance("m1", EntityModified, entity_type="settlement", entity_id="s1")
    assert reads(world) == 2, "the campaign's answers were dropped: read again"
    assert cache_counts(worker) == {"hit": 1.0, "miss": 2.0}


async def test_an_answer_goes_stale_and_a_drop_forgets_a_tenant_only(settings):
    redis = aioredis.Redis.from_url(settings.redis_url)
    clock = [1000.0]
    cache = QueryCache(redis, namespace=settings.redis_namespace, ttl_s=300, metrics=Metrics(),
                       clock=lambda: clock[0])
    query = "query S($c: ID!) { getSettlementsByCampaign(campaignId: $c) { id } }"

    async def ask(tenant: str, service: str = "world", text: str = query, **variables: str):
        return (await cache.get(tenant, service, text, variables or {"c": tenant})).data

    try:
        for tenant in ("c1", "c2"):
            read = await cache.get(tenant, "world", query, {"c": tenant})
            assert read.data is None
            assert await cache.put(tenant, "world", query, {"c": tenant}, {"answer": tenant},
                                   read_in=read.generation)
        # the same operation laid out otherwise (whitespace) is the same question
        relaid = query.replace(" { ", "\n  {\n    ").replace(" }", "\n  }")
        assert await ask("c1", text=relaid) == {"answer": "c1"}
        assert await ask("c1", c="c2") is None, "other variables"
        assert await ask("c1", service="api") is None, "another service"
        await cache.drop(["c1"])
        assert await ask("c1") is None and await ask("c2") == {"answer": "c2"}
        clock[0] += 301
        assert await ask("c2") is None, "stale after 5 minutes"
        assert 0 < await redis.ttl(f"{settings.redis_namespace}:query-cache:c2") <= 300
    finally:
        await redis.aclose()


async def test_an_answer_read_before_a_drop_is_not_put_back_after_it(settings):
    redis = aioredis.Redis.from_url(settings.redis_url)
    cache = QueryCache(redis, namespace=settings.redis_namespace, ttl_s=300, metrics=Metrics())
    query = "query S { getSettlementsByCampaign(campaignId: \"c1\") { id } }"
    try:
        before = await cache.get("c1", "world", query, {})  # a job reads the world ...
        await cache.drop(["c1"])  # ... an entity of c1 changes meanwhile ...
        assert not await cache.put("c1", "world", query, {}, {"stale": True},
                                   read_in=before.generation)  # ... its answer is not kept
        assert (await cache.get("c1", "world", query, {})).data is None
        after = await cache.get("c1", "world", query, {})
        assert await cache.put("c1", "world", query, {}, {"fresh": True}, read_in=after.generation)
        assert (await cache.get("c1", "world", query, {})).data == {"fresh": True}
    finally:
        await redis.aclose()
