"""Schedules on a tenant's world clock, on the real broker, Redis and APIs: a one-off at a world
time (a deferred effect) and intervals in world time fire as the campaign's clock passes their
times, however far it jumps, per misfire policy; each (schedule, world time) runs once, its job
saying the world time it was due at; a redelivered advance fires nothing again."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import httpx

from cronbus.clients.kafka.publisher import EventPublisher
from cronbus.streams import topics
from cronbus.streams.events import WorldTimeAdvanced
from cronbus.streams.jobs import Job
from tests.integration.cli import run_cronbus
from tests.integration.kafka import eventually, read_topic

DAWN = datetime(1492, 10, 12, 6, tzinfo=UTC)
HOUR = timedelta(hours=1)
TOKENS = "tok-c1:c1"
C1 = {"Authorization": "Bearer tok-c1"}


async def advance(settings, event_id: str, world_time: datetime) -> None:
    async with EventPublisher(settings.broker_url) as publisher:
        await publisher.publish(WorldTimeAdvanced(event_id=event_id, tenant_id="c1",
                                                  occurred_at=datetime.now(UTC),
                                                  world_time=world_time))
        await publisher.flush()


async def export_jobs(settings) -> list[Job]:
    records = await read_topic(settings.broker_url, topics.job_topic("export"), timeout_s=3,
                               idle_s=0.5)
    return [Job.decode(r.value) for r in records]


def due_times(jobs: list[Job], schedule_id: str) -> list[datetime]:
    return sorted(j.world_due_at for j in jobs if j.payload.get("schedule_id") == schedule_id)


async def test_world_clock_schedules_fire_as_the_campaigns_clock_passes_them(
    stack, api, settings, start_worker, cronbus_env
):
    world = stack.world
    httpx.post(f"{world.control_url}/seed", timeout=10, json={
        "campaigns": [{"id": "c1", "worldTime": DAWN.isoformat()}],
        "effects": [{"id": "fx1", "campaignId": "c1"},
                    {"id": "fx2", "campaignId": "c1"}]}).raise_for_status()
    worker = start_worker(roles=("ingest", "processor", "ticker", "api"), web_api_tokens=TOKENS,
                          job_types="export,deferred-effect",
                          debounce_policies="deferred-effect=immediate")
    async with httpx.AsyncClient(base_url=worker.base_url, headers=C1, timeout=10) as http:
        for body in (
            {"id": "effect-fx1", "clock": "world", "run_at": (DAWN + 2 * HOUR).isoformat(),
             "job_type": "deferred-effect", "payload": {"effect_id": "fx1"}},
            {"id": "every-hour", "clock": "world", "every_ms": 3_600_000,
             "start_at": DAWN.isoformat(), "job_type": "export", "misfire": "run_all",
             "misfire_limit": 5},
            {"id": "hourly-once", "clock": "world", "every_ms": 3_600_000,
             "start_at": DAWN.isoformat(), "job_type": "export", "misfire": "run_once"},
        ):
            created = await http.post("/schedules", json=body)
            assert created.status_code == 201, created.text
        bad = await http.post("/schedules", json={"id": "x", "clock": "world", "job_type": "export",
                                                  "cron": "0 * * * *"})
        assert bad.status_code == 422 and bad.json()["problems"][0]["field"] == "cron"
        # the source's queueDeferredEffect(effectId, executeAt, campaignId), in one call
        queued = await http.put("/effects/fx2", json={"execute_at": (DAWN + 3 * HOUR).isoformat(),
                                                      "clock": "world"})
        assert queued.status_code == 201, queued.text
        assert queued.json()["id"] == "effect.fx2" and queued.json()["job_type"] == "deferred-effect"
        by_cli = run_cronbus(cronbus_env, "schedules", "--url", worker.base_url, "--token",
                             "tok-c1", "defer-effect", "fx9", "--at", DAWN.isoformat(), "--world")
        assert by_cli.returncode == 0 and json.loads(by_cli.stdout)["clock"] == "world", by_cli.stderr
        unsaid = await http.put("/effects/fx3", json={"at": "soon"})
        assert unsaid.status_code == 422
        assert {p["field"] for p in unsaid.json()["problems"]} == {"at", "execute_at"}

    await advance(settings, "a1", DAWN + HOUR / 2)  # both intervals are due at DAWN
    jobs = await eventually(lambda: export_jobs(settings), lambda j: len(j) == 2, timeout_s=30,
                            what="the intervals' first runs")
    assert due_times(jobs, "every-hour") == due_times(jobs, "hourly-once") == [DAWN]
    assert all(j.scheduled_at.year == datetime.now(UTC).year for j in jobs), "fired on the wall"

    # a jump of five hours: the latest time passed is on time, the others missed: run_all runs
    # each missed one (up to its misfire limit of 5), run_once one of them (the latest); the
    # effect due at DAWN + 2 h runs once
    await advance(settings, "a2", DAWN + 5 * HOUR + HOUR / 2)
    jobs = await eventually(lambda: export_jobs(settings), lambda j: len(j) == 9, timeout_s=30,
                            what="the jump's runs")
    assert due_times(jobs, "every-hour") == [DAWN + n * HOUR for n in range(6)]
    assert due_times(jobs, "hourly-once") == [DAWN, DAWN + 4 * HOUR, DAWN + 5 * HOUR]
    effects = await eventually(
        lambda: httpx.get(f"{world.control_url}/state", timeout=10).json()["effects"],
        lambda fx: fx["fx1"]["executed"] and fx["fx2"]["executed"], timeout_s=30,
        what="fx1 and fx2 executed at their world times")
    assert effects == {fx: {"executed": True, "asked": 1, "changed": 1} for fx in ("fx1", "fx2")}

    # the same advance again, and an older one: nothing fires again
    await advance(settings, "a2-again", DAWN + 5 * HOUR + HOUR / 2)
    await advance(settings, "older", DAWN + 3 * HOUR)
    await advance(settings, "a3", DAWN + 5 * HOUR + HOUR * 0.75)  # passes no fire time
    applied = await eventually(lambda: api.applied(), lambda a: len(a) == 9, timeout_s=30,
                               what="each export run applied")
    assert set(applied.values()) == {1}
    assert len(await export_jobs(settings)) == 9
    async with httpx.AsyncClient(base_url=worker.base_url, headers=C1, timeout=10) as http:
        runs = (await http.get("/schedules/every-hour/runs")).json()["runs"]
        assert len(runs) == 6
        upcoming = (await http.get("/schedules/every-hour/next?count=2")).json()
        assert upcoming["clock"] == "world"  # after the campaign's clock, in world time
        assert [n["utc"] for n in upcoming["next"]] == [
            (DAWN + 6 * HOUR).isoformat(), (DAWN + 7 * HOUR).isoformat()]
        # a backfill of world times the clock passed runs each again, as runs of their own;
        # world times still to come are refused
        backfill = await http.post("/schedules/every-hour/backfill", json={
            "from": DAWN.isoformat(), "to": (DAWN + 2 * HOUR).isoformat()})
        assert backfill.status_code == 202 and backfill.json()["sent"] == 3, backfill.text
        ahead = await http.post("/schedules/every-hour/backfill", json={
            "from": DAWN.isoformat(), "to": (DAWN + 9 * HOUR).isoformat()})
        assert ahead.status_code == 422 and "still to come" in ahead.text
    jobs = await eventually(lambda: export_jobs(settings), lambda j: len(j) == 12, timeout_s=30,
                            what="the backfilled runs")
    backfilled = [j for j in jobs if j.triggered_by == "manual"]
    assert sorted(j.world_due_at for j in backfilled) == [DAWN + n * HOUR for n in range(3)]


async def test_a_kill_9_mid_advance_loses_and_doubles_no_world_fire(
    stack, api, settings, start_worker
):
    roles = ("ingest", "processor", "ticker", "api")
    options = dict(web_api_tokens=TOKENS, job_types="export", broker_session_timeout_s="3",
                   broker_rebalance_timeout_s="3")
    first = start_worker("first", roles=roles, **options)
    async with httpx.AsyncClient(base_url=first.base_url, headers=C1, timeout=10) as http:
        created = await http.post("/schedules", json={
            "id": "every-hour", "clock": "world", "every_ms": 3_600_000,
            "start_at": DAWN.isoformat(), "job_type": "export", "misfire": "run_all",
            "misfire_limit": 1000})
        assert created.status_code == 201, created.text
    api.delay(0.01)  # the runs take a while: the kill lands mid-way
    await advance(settings, "year", DAWN + 499 * HOUR + HOUR / 2)  # 500 fire times passed
    await eventually(lambda: api.applied(), lambda a: len(a) >= 50, timeout_s=60,
                     what="a tenth of the runs applied")
    first.kill()
    start_worker("second", roles=roles, **options)
    await advance(settings, "year-again", DAWN + 499 * HOUR + HOUR / 2)  # delivered twice
    applied = await eventually(lambda: api.applied(), lambda a: len(a) >= 500, timeout_s=120,
                               interval_s=1, what="every passed hour applied")
    assert len(applied) == 500 and set(applied.values()) == {1}, "each once, none lost"
    jobs = await export_jobs(settings)
    assert sorted({j.world_due_at for j in jobs}) == [DAWN + n * HOUR for n in range(500)]


async def test_two_tickers_fire_one_tenants_world_schedules_in_world_time_order(
    stack, settings, start_worker
):
    """A tenant's world schedules sit on many partitions of `schedules` (their keys differ);
    the ticker owning the tenant's partition fires all of them, so its ticks come in order."""
    tickers = dict(broker_session_timeout_s="3", broker_rebalance_timeout_s="3")
    front = start_worker("front", roles=("ingest", "api"), web_api_tokens=TOKENS)
    start_worker("ticker-1", roles=("ticker",), **tickers)
    start_worker("ticker-2", roles=("ticker",), **tickers)
    due = [DAWN + timedelta(minutes=7 * n) for n in range(12)]
    async with httpx.AsyncClient(base_url=front.base_url, headers=C1, timeout=10) as http:
        for n in (5, 0, 11, 3, 8, 1, 10, 6, 2, 9, 4, 7):  # ids on many partitions, out of order
            created = await http.post("/schedules", json={
                "id": f"effect-{n}", "clock": "world", "run_at": due[n].isoformat(),
                "job_type": "export"})
            assert created.status_code == 201, created.text
    await advance(settings, "dusk", DAWN + 2 * HOUR)

    async def ticks() -> list[datetime]:
        records = await read_topic(settings.broker_url, topics.CRON_TICKS, timeout_s=3,
                                   idle_s=0.5)
        return [datetime.fromisoformat(json.loads(r.value)["fire_at"]) for r in records
                if json.loads(r.value)["tenant_id"] == "c1"]

    fired = await eventually(ticks, lambda t: len(t) == 12, timeout_s=60, what="twelve ticks")
    assert fired == due, "in world-time order, from one ticker"
