"""Settlement growth and structure maintenance against the development world API, through a real
worker: a campaign's world time advancing makes one schedule per (entity, cycle), scaled by level
and overridden by typed variables; each fire runs its cycle's mutation once; a level change
moves its settlement's schedules (the others are not rewritten); a deleted settlement's
schedules are removed; a construction completes once, at its end."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import httpx

from cronbus.clients.kafka.publisher import EventPublisher
from cronbus.streams import topics
from cronbus.streams.events import EntityModified, WorldTimeAdvanced
from tests.integration.kafka import eventually, read_topic

CAMPAIGN = "c-world"
HOUR_MS = 3_600_000


def seed(world, body: dict) -> None:
    httpx.post(f"{world.control_url}/seed", json=body, timeout=30).raise_for_status()


def applied(world) -> dict[str, int]:
    return httpx.get(f"{world.control_url}/state", timeout=30).json()["applied"]


async def schedule_records(settings) -> dict[str, list[dict | None]]:
    """Every record of the campaign's schedules on the schedules topic, by id, oldest first."""
    found: dict[str, list[dict | None]] = {}
    for record in await read_topic(settings.broker_url, topics.SCHEDULES, timeout_s=5, idle_s=0.5):
        tenant, _, schedule_id = record.key.decode().partition("/")
        if tenant == CAMPAIGN:
            found.setdefault(schedule_id, []).append(
                json.loads(record.value) if record.value is not None else None)
    return found


def current(records: dict[str, list[dict | None]]) -> dict[str, dict]:
    return {sid: history[-1] for sid, history in records.items() if history[-1] is not None}


async def publish(settings, *events) -> None:
    async with EventPublisher(settings.broker_url) as publisher:
        for event in events:
            await publisher.publish(event)
        await publisher.flush()


async def test_settlement_and_structure_schedules_follow_the_world(
    stack, settings, start_worker
):
    world = stack.world
    now = datetime.now(UTC)
    seed(world, {
        "campaigns": [{"id": CAMPAIGN, "worldTime": now.isoformat()}],
        "settlements": [
            # population every 0.05 min (3 s) at level 1, to see it fire
            {"id": "s1", "campaignId": CAMPAIGN, "level": 1,
             "variables": {"populationGrowthIntervalMinutes": 0.05}},
            {"id": "s2", "campaignId": CAMPAIGN, "level": 3, "variables": {}},
            {"id": "s3", "campaignId": CAMPAIGN, "level": 2,
             "variables": {"resourceGenerationIntervalMinutes": 30}},
        ],
        "structures": [
            {"id": "t1", "campaignId": CAMPAIGN, "isConstructed": True,
             "variables": {"maintenanceIntervalMinutes": 120}},
            {"id": "t2", "campaignId": CAMPAIGN, "isConstructed": False,
             "constructionEndsAt": (now + timedelta(seconds=8)).isoformat()},
        ],
    })
    start_worker(roles=("ingest", "processor", "ticker"),
                 job_types="settlement-growth,structure-maintenance")
    await publish(settings, WorldTimeAdvanced(event_id="adv-1", tenant_id=CAMPAIGN,
                                              occurred_at=now, world_time=now))

    expected = {
        "settlement.s1.population-growth": 3000,  # its variable, at level 1 (1.0x)
        "settlement.s1.resource-generation": HOUR_MS,
        "settlement.s1.level-up-check": 6 * HOUR_MS,
        "settlement.s2.population-growth": round(0.8 * HOUR_MS),  # level 3: 0.8x
        "settlement.s2.resource-generation": round(0.8 * HOUR_MS),
        "settlement.s2.level-up-check": round(0.8 * 6 * HOUR_MS),
        "settlement.s3.population-growth": round(0.9 * HOUR_MS),  # level 2: 0.9x
        "settlement.s3.resource-generation": round(0.9 * HOUR_MS / 2),  # its variable: 30 min
        "settlement.s3.level-up-check": round(0.9 * 6 * HOUR_MS),
        "structure.t1.maintenance": 2 * HOUR_MS,
        "structure.t1.upgrade-check": 6 * HOUR_MS,
    }
    records = await eventually(lambda: schedule_records(settings),
                               lambda r: len(current(r)) == len(expected) + 1, timeout_s=60,
                               what="the campaign's schedules written")
    kept = current(records)
    assert {sid: s.get("every_ms") for sid, s in kept.items() if "every_ms" in s} == expected
    assert kept["structure.t2.construction-complete"]["run_at"].startswith(
        (now + timedelta(seconds=8)).strftime("%Y-%m-%dT%H:%M:%S"))
    assert kept["settlement.s1.population-growth"]["payload"] == {
        "settlement_id": "s1", "kind": "population-growth"}

    # the fires run their mutations: s1's population every 3 s, t2's completion once
    done = await eventually(lambda: applied(world),
                            lambda a: a.get("s1:population-growth", 0) >= 2
                            and a.get("t2:construction-complete") == 1,
                            timeout_s=60, what="s1 grown twice and t2 completed")
    assert done["t2:construction-complete"] == 1
    assert not any(k.startswith(("s2:", "s3:")) for k in done), "their cycles are hours away"
    state = httpx.get(f"{world.control_url}/state", timeout=30).json()
    assert state["applied"]["s1:population-growth"] >= 2

    # s1 levels up to 3 (its population cycle moves to 0.8 x 3 s); s2 is deleted
    seed(world, {"settlements": [{"id": "s1", "level": 3}, {"id": "s2", "deleted": True}]})
    at = datetime.now(UTC)
    await publish(settings,
                  EntityModified(event_id="mod-s1", tenant_id=CAMPAIGN, occurred_at=at,
                                 entity_type="settlement", entity_id="s1"),
                  EntityModified(event_id="del-s2", tenant_id=CAMPAIGN, occurred_at=at,
                                 entity_type="settlement", entity_id="s2", change="deleted"))
    records = await eventually(
        lambda: schedule_records(settings),
        lambda r: current(r).get("settlement.s1.population-growth", {}).get("every_ms") == 2400
        and not any(sid.startswith("settlement.s2.") for sid in current(r)),
        timeout_s=60, what="s1's schedules moved and s2's removed")
    kept = current(records)
    assert kept["settlement.s1.resource-generation"]["every_ms"] == round(0.8 * HOUR_MS)
    assert [s is None for s in records["settlement.s2.population-growth"]] == [False, True]
    # s3 did not change: its schedules were kept as they were, not written again
    assert all(len(history) == 1 for sid, history in records.items()
               if sid.startswith("settlement.s3."))
