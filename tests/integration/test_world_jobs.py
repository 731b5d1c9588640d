"""The world-time family against the development world API, through a real worker: 1,000
campaigns x 25 overdue events -> every event expired exactly once, never more than 10 calls in
flight per campaign, and the same with a kill -9 of the worker mid-run; the 5-minute built-in's
job pages through every campaign; deferred effects executed once (an effect executed already,
or gone, is not executed again)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx

from cronbus.clients.kafka.publisher import EventPublisher
from cronbus.streams import topics
from cronbus.streams.jobs import Job, job_id_for
from tests.integration.kafka import eventually

CAMPAIGNS = 1000
EVENTS = 25
NOW = datetime(1492, 10, 12, 6, tzinfo=UTC)


def seed(world, body: dict) -> None:
    httpx.post(f"{world.control_url}/seed", json=body, timeout=60).raise_for_status()


def world_state(world) -> dict:
    return httpx.get(f"{world.control_url}/state", timeout=60).json()


def seed_overdue(world, prefix: str, *, with_later: bool = False) -> list[str]:
    """CAMPAIGNS campaigns at NOW with EVENTS overdue events each (and, ``with_later``, one
    not yet due each, which must stay); returns the campaign ids."""
    campaigns = [f"{prefix}{n:04}" for n in range(CAMPAIGNS)]
    events = [{"id": f"{c}-e{k}", "campaignId": c,
               "scheduledAt": (NOW - timedelta(hours=k + 1)).isoformat()}
              for c in campaigns for k in range(EVENTS)]
    if with_later:
        events += [{"id": f"{c}-later", "campaignId": c,
                    "scheduledAt": (NOW + timedelta(hours=1)).isoformat()} for c in campaigns]
    seed(world, {"campaigns": [{"id": c, "worldTime": NOW.isoformat()} for c in campaigns],
                 "events": events})
    return campaigns


def expired(world) -> int:
    return sum(e["completed"] for e in world_state(world)["events"].values())


def job(job_type: str, tenant: str, ref: str, **payload: object) -> Job:
    return Job(job_id=job_id_for(tenant, job_type, ref), tenant_id=tenant, type=job_type,
               triggered_by="event", scheduled_at=datetime.now(UTC), payload=payload)


async def publish(settings, jobs: list[Job]) -> None:
    async with EventPublisher(settings.broker_url) as publisher:
        for one in jobs:
            await publisher.publish_raw(topics.job_topic(one.type), one.encode(),
                                        key=one.tenant_id.encode())
        await publisher.flush()


async def test_every_overdue_event_of_a_thousand_campaigns_is_expired_once(
    stack, settings, start_worker
):
    world = stack.world
    campaigns = seed_overdue(world, "c", with_later=True)
    httpx.post(f"{world.control_url}/delay", json={"seconds": 0.005}, timeout=5)
    start_worker(roles=("processor",), job_types="event-expiration")
    # one job per campaign, as after its world time advanced
    await publish(settings, [job("event-expiration", c, "advanced") for c in campaigns])

    await eventually(lambda: expired(world), lambda n: n >= CAMPAIGNS * EVENTS, timeout_s=150, interval_s=2,
                     what="every overdue event expired")
    state = world_state(world)
    overdue = {i: e for i, e in state["events"].items() if not i.endswith("-later")}
    assert all(e["completed"] and e["asked"] == 1 and e["changed"] == 1 for e in overdue.values())
    assert not any(e["completed"] or e["asked"] for i, e in state["events"].items()
                   if i.endswith("-later"))
    assert max(state["most_in_flight"].values()) <= 10
    assert max(state["most_in_flight"].values()) > 1, "the calls of a job run side by side"


async def test_the_builtin_pages_through_every_campaign_and_effects_run_once(
    stack, settings, start_worker
):
    world = stack.world
    campaigns = [f"p{n:03}" for n in range(250)]  # three pages of 100
    seed(world, {
        "campaigns": [{"id": c, "worldTime": NOW.isoformat()} for c in campaigns],
        "events": [{"id": f"{c}-e", "campaignId": c,
                    "scheduledAt": (NOW - timedelta(minutes=10)).isoformat()} for c in campaigns]
        # overdue by a minute: within the built-in's grace period (CRONBUS_EVENT_EXPIRATION_GRACE_S)
        + [{"id": "p001-fresh", "campaignId": "p001",
            "scheduledAt": (NOW - timedelta(minutes=1)).isoformat()}],
        "effects": [{"id": f"fx{n}", "campaignId": "p000"} for n in range(6)],
    })
    start_worker(roles=("processor",), job_types="event-expiration,deferred-effect")
    # fx0 was executed before: a job for it executes nothing; "gone" names no effect at all
    await publish(settings, [job("deferred-effect", "p000", "early", effect_id="fx0")])
    await eventually(lambda: world_state(world)["effects"]["fx0"]["executed"], bool,
                     timeout_s=30, what="fx0 executed")
    await publish(settings, [
        job("event-expiration", settings.system_tenant, "builtin"),
        *(job("deferred-effect", "p000", f"due-{n}", effect_id=f"fx{n}") for n in range(6)),
        job("deferred-effect", "p000", "gone", effect_id="fx-gone"),
    ])

    def done() -> dict:
        return world_state(world)

    state = await eventually(
        done, lambda s: all(e["completed"] for i, e in s["events"].items() if i != "p001-fresh")
        and all(e["executed"] for e in s["effects"].values()),
        timeout_s=90, interval_s=1, what="every campaign's event expired and every effect run")
    assert all(e["asked"] == 1 for i, e in state["events"].items() if i != "p001-fresh")
    assert state["events"]["p001-fresh"] == {"completed": False, "asked": 0, "changed": 0}
    assert {i: (e["asked"], e["changed"]) for i, e in state["effects"].items()} == {
        f"fx{n}": (1, 1) for n in range(6)}, "fx0's second job executed nothing"
    assert sorted(a["effect"] for a in state["audit"]) == [f"fx{n}" for n in range(6)]


async def test_a_kill_9_mid_run_expires_every_event_once_and_repeats_only_calls_in_flight(
    stack, settings, start_worker
):
    world = stack.world
    campaigns = seed_overdue(world, "k")
    httpx.post(f"{world.control_url}/delay", json={"seconds": 0.01}, timeout=5)
    first = start_worker("first", roles=("processor",), job_types="event-expiration")
    await publish(settings, [job("event-expiration", c, "advanced") for c in campaigns])

    await eventually(lambda: expired(world), lambda n: n >= CAMPAIGNS * EVENTS // 4, timeout_s=90,
                     interval_s=0.5, what="a quarter expired before the kill")
    first.kill()  # kill -9 with jobs mid-run: their finished steps are kept, the rest redone
    start_worker("second", roles=("processor",), job_types="event-expiration")
    await eventually(lambda: expired(world), lambda n: n >= CAMPAIGNS * EVENTS, timeout_s=150, interval_s=2,
                     what="every overdue event expired after the kill")
    events = world_state(world)["events"]
    assert all(e["changed"] == 1 for e in events.values()), "each event expired exactly once"
    asked_again = [i for i, e in events.items() if e["asked"] > 1]
    # only a call in flight at the kill (its step not yet kept) is made again, under the same
    # Idempotency-Key: at most 50 jobs x 10 calls
    assert len(asked_again) <= 500 and all(events[i]["asked"] == 2 for i in asked_again)
