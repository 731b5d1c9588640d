"""The ticker on the real broker, Redis and development API: a thousand schedules firing every
second over two tickers, one killed mid-way, reach the API exactly once each; after 20 s with
no ticker each misfire policy catches up as it says; a restart doubles nothing."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta

import pytest
import redis.asyncio as aioredis

from cronbus.clients.redis.schedule_runs import RunLog
from cronbus.streams import topics
from cronbus.streams.jobs import job_id_for
from cronbus.streams.schedules import Schedule, tick_trigger_ref
from tests.integration.kafka import eventually, read_topic, write_schedules

JOB_TYPE = "export"  # immediate: each tick is its own job


def every_second(tenant: str, n: int, now: datetime, **fields: object) -> Schedule:
    return Schedule.model_validate({
        "id": f"sec-{n}", "tenant_id": tenant, "name": f"every second {n}",
        "job_type": JOB_TYPE, "every_ms": 1000, "revision_at": now, **fields})


async def fire_times(brokers: list[str], *, idle_s: float) -> dict[str, list[float]]:
    """The fire times (Unix seconds) on ``cron-ticks``, by schedule id, in the order appended."""
    fires: dict[str, list[float]] = defaultdict(list)
    for record in await read_topic(brokers, topics.CRON_TICKS, idle_s=idle_s):
        tick = json.loads(record.value)
        fires[tick["schedule_id"]].append(datetime.fromisoformat(tick["fire_at"]).timestamp())
    return fires


def job_id_of(schedule: Schedule, fire_at: datetime) -> str:
    return job_id_for(schedule.tenant_id, schedule.job_type, tick_trigger_ref(schedule.id, fire_at))


# 30,000 jobs: about 70 s alone, over 180 s on a loaded CI machine running three tests at once
@pytest.mark.timeout(420)
async def test_a_thousand_schedules_every_second_reach_the_api_exactly_once_across_a_kill(
        stack, settings, start_worker, api, tmp_path):
    # two tickers share the schedules' partitions; one ingest+processor worker runs the jobs
    tickers = dict(broker_session_timeout_s="3", broker_rebalance_timeout_s="3")
    start_worker("runner", roles=("ingest", "processor"), job_types=JOB_TYPE,
                 processor_concurrency="100")
    first = start_worker("ticker-1", roles=("ticker",), **tickers)
    start_worker("ticker-2", roles=("ticker",), **tickers)

    now = datetime.now(UTC)
    start = now.replace(microsecond=0) + timedelta(seconds=3)
    end = start + timedelta(seconds=29)  # 30 fire times each: start, start + 1 s, ..., end
    schedules = [every_second(f"tenant-{n % 50}", n, now, start_at=start, end_at=end,
                              misfire="run_all", misfire_limit=100) for n in range(1000)]
    await write_schedules(settings.broker_url, schedules)
    expected = {job_id_of(s, start + timedelta(seconds=k)) for s in schedules for k in range(30)}

    await asyncio.sleep(max(0.0, (start - datetime.now(UTC)).total_seconds()) + 12)
    first.kill()  # kill -9 mid-way: its partitions move, its last ticks may be fired again

    applied = await eventually(api.applied, lambda got: len(got) >= len(expected),
                               timeout_s=360, what=f"{len(expected)} applied jobs", interval_s=2)
    await asyncio.sleep(2)  # anything doubled would arrive by now
    applied = api.applied()
    assert set(applied) == expected
    assert set(applied.values()) == {1}
    calls = Counter(r["idempotency_key"] for r in api.requests())
    assert calls.keys() == expected
    doubled = {key: n for key, n in calls.items() if n > 1}
    assert not doubled, f"{len(doubled)} job(s) called downstream more than once"


async def test_after_twenty_seconds_without_a_ticker_each_misfire_policy_does_what_it_says(
        stack, settings, start_worker):
    env = dict(schedule_misfire_grace_s="2")
    now = datetime.now(UTC)
    policies = {
        "skip": {"misfire": "skip"},
        "run-once": {"misfire": "run_once"},
        "run-all": {"misfire": "run_all", "misfire_limit": 5},
    }
    schedules = {name: every_second("acme", n, now, id=f"misfire-{name}", **fields)
                 for n, (name, fields) in enumerate(policies.items())}
    await write_schedules(settings.broker_url, list(schedules.values()))

    ticker = start_worker("ticker-a", roles=("ticker",), **env)
    await asyncio.sleep(4)
    assert ticker.stop() == 0
    stopped = time.time()
    await asyncio.sleep(20)
    start_worker("ticker-b", roles=("ticker",), **env)
    await asyncio.sleep(4)

    fires = await fire_times(settings.broker_url, idle_s=2)
    last_before, first_after = {}, {}
    for name, schedule in schedules.items():
        times = fires[schedule.id]
        assert len(times) == len(set(times)), f"{name}: a fire time fired twice"
        before = [t for t in times if t <= stopped]
        after = [t for t in times if t > stopped]
        assert len(before) >= 2 and after, f"{name}: {times}"
        # each side is whole seconds in a row: nothing lost while a ticker ran
        assert all(b - a == 1 for a, b in itertools.pairwise(before)), f"{name}: {before}"
        assert all(b - a == 1 for a, b in itertools.pairwise(after)), f"{name}: {after}"
        assert after[-1] > time.time() - 3, f"{name}: fires on time after the restart"
        last_before[name], first_after[name] = before[-1], after[0]
    # each fired run is in its schedule's run history, newest first, under the job's id
    redis = aioredis.Redis.from_url(settings.redis_url)
    try:
        runs = await RunLog(redis, namespace=settings.redis_namespace, kept=100,
                            ttl_s=3600).recent("acme", schedules["run-all"].id, 100)
    finally:
        await redis.aclose()
    fired = sorted(fires[schedules["run-all"].id], reverse=True)
    assert [datetime.fromisoformat(r.fire_at).timestamp() for r in runs] == fired
    assert {r.job_id for r in runs} == {
        job_id_of(schedules["run-all"], datetime.fromtimestamp(t, UTC)) for t in fired}
    # the three share one grid and were caught up in one step: skip starts with the fire times
    # still within the grace, run_once one second earlier (the latest missed), run_all five
    assert first_after["skip"] - last_before["skip"] > 15
    assert first_after["run-once"] == first_after["skip"] - 1
    assert first_after["run-all"] == first_after["skip"] - 5


async def test_overlap_skip_waits_for_the_previous_run_to_finish(
        stack, settings, start_worker, api):
    api.delay(2.5)  # each run takes 2.5 s downstream: a schedule every second overlaps itself
    start_worker("runner", roles=("ingest", "processor", "ticker"), job_types=JOB_TYPE)
    now = datetime.now(UTC)
    skipping = every_second("acme", 0, now, id="overlap-skip", overlap="skip")
    allowing = every_second("acme", 1, now, id="overlap-allow")
    await write_schedules(settings.broker_url, [skipping, allowing])
    await asyncio.sleep(12)

    fires = await fire_times(settings.broker_url, idle_s=1)
    allowed, skipped = fires["overlap-allow"], fires["overlap-skip"]
    assert len(allowed) >= 9 and all(b - a == 1 for a, b in itertools.pairwise(allowed))
    # a run is active for at least 2.5 s after its fire: the next fire comes 3 s or more later
    assert len(skipped) >= 2, skipped
    assert all(b - a >= 3 for a, b in itertools.pairwise(skipped)), skipped
    assert len(skipped) < len(allowed) / 2
