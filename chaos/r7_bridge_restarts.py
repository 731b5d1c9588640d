"""R7 bridge restarts: the bridge's Redis restarted three times on a quiet channel.

A worker runs the bridge (on a Redis of the scenario's own), ingest and the event-expiration
processor against the development world API. Each campaign a message names is seeded there
with one overdue event, so a bridged ``worldTimeAdvanced`` message shows at the API as that
event expired: ``applied`` counts those (exactly once each), not what the bridge says.

1. a first message flows (the bridge is subscribed);
2. three times: the channel stays quiet, then the bridge's Redis restarts (empty, same port);
   ``restart_to_flow_ms`` is from Redis answering again to the bridge subscribed again (seen
   in ``PUBSUB NUMPAT``, so the channel stays quiet: before the fix the backoff was reset only
   by a message, so a quiet channel's second outage waited 9-12 s); after the third restart
   messages are published at once and the first one received is the figure;
3. a burst of messages on distinct campaigns, and one of 2 MB, too large for the broker: it
   must be in ``events.invalid`` with reason ``oversize``, its first bytes, size and SHA-256,
   and counted in ``cronbus_events_invalid_total``;
4. the bridge's Redis stopped once more: the bridge is unready and health degraded, while the
   worker's other roles stay ready; then it comes back.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import redis

from chaos import faults
from cronbus.streams import headers, topics
from cronbus.streams.metrics import PUBSUB_TOPIC

SCENARIO = "R7"
RESTARTS = 3
WORLD_NOW = datetime(1492, 10, 12, 6, tzinfo=UTC)
MAX_RESTART_TO_FLOW_S = 1.0
OVERSIZE_BYTES = 2_000_000
PROFILES = {"full": {"quiet_s": 20.0, "burst": 200}, "ci": {"quiet_s": 2.0, "burst": 30}}


def _message() -> bytes:
    return json.dumps({"world_time": WORLD_NOW.isoformat()}).encode()


def _channel(campaign: str) -> str:
    return f"campaign.{campaign}.worldTimeAdvanced"


def _world_state(world_control: str) -> dict[str, Any]:
    return dict(httpx.get(f"{world_control}/state", timeout=60).json())


def run(profile: str, work_dir: Path) -> dict[str, Any]:
    figures = PROFILES[profile]
    started = time.monotonic()
    run_id = uuid.uuid4().hex[:6]
    # the worker's own Redis is the shared one; its jobs call the world API
    stack = faults.lean_stack(work_dir, apis=("world",))
    bridge_redis = faults.OwnRedis(stack.log_dir, name="bridge-redis")
    worker = None
    try:
        stack.start()
        bridge_redis.start()
        assert stack.world is not None
        world_control = stack.world.control_url
        campaigns = [f"r7-{run_id}-{n}" for n in range(figures["burst"] + 2)]
        httpx.post(f"{world_control}/seed", timeout=60, json={
            "campaigns": [{"id": c, "worldTime": WORLD_NOW.isoformat()} for c in campaigns],
            "events": [{"id": f"{c}-overdue", "campaignId": c,
                        "scheduledAt": (WORLD_NOW - timedelta(hours=1)).isoformat()}
                       for c in campaigns]}).raise_for_status()
        env = faults.worker_env(stack, work_dir, job_types="event-expiration",
                                bridge_redis_url=bridge_redis.url)
        worker = faults.start_worker("worker", env, work_dir,
                                     roles=("bridge", "ingest", "processor"))
        publisher = redis.Redis.from_url(bridge_redis.url, socket_connect_timeout=1)

        def publish(campaign: str, data: bytes) -> int:
            try:
                return int(publisher.publish(_channel(campaign), data))
            except (redis.RedisError, OSError):
                return 0

        def subscribed() -> bool:
            try:
                return int(publisher.pubsub_numpat()) > 0
            except (redis.RedisError, OSError):
                return False

        received: list[str] = []  # campaigns whose message a subscriber (the bridge) received
        first, *burst = campaigns[1:]
        faults.wait_for(lambda: publish(campaigns[0], _message()), lambda n: n >= 1,
                        timeout_s=60, interval_s=0.1, what="the bridge's first subscription")
        received.append(campaigns[0])

        restart_to_flow: list[float] = []
        for restart in range(RESTARTS):
            time.sleep(figures["quiet_s"])  # a quiet channel: nothing published
            back = bridge_redis.restart()
            if restart < RESTARTS - 1:
                faults.wait_for(subscribed, bool, timeout_s=120, interval_s=0.01,
                                what=f"the bridge subscribed after restart {restart + 1}")
            else:  # the last time a message is what flows
                faults.wait_for(lambda: publish(first, _message()), lambda n: n >= 1,
                                timeout_s=120, interval_s=0.01,
                                what="a message flowing after the last restart")
                received.append(first)
            restart_to_flow.append(time.monotonic() - back)

        for campaign in burst:
            if publish(campaign, _message()) >= 1:
                received.append(campaign)
        huge = b"{" + b"x" * (OVERSIZE_BYTES - 1)
        big_channel = _channel(f"r7-{run_id}-big")
        oversize_received = int(publisher.publish(big_channel, huge)) >= 1

        # the bridge's Redis away: the bridge is unready, the worker's other roles are not
        bridge_redis.stop()
        faults.wait_for(lambda: faults.health(worker)["components"]["bridge"]["state"],
                        lambda state: state != "subscribed", timeout_s=30, interval_s=0.1,
                        what="the bridge to notice its Redis gone")
        ready_status, ready_body = faults.ready(worker)
        during = faults.health(worker)
        bridge_redis.start()
        faults.wait_for(subscribed, bool, timeout_s=60, interval_s=0.05,
                        what="the bridge back after the last outage")
        outage_seen = {
            "ready_status": ready_status, "roles": ready_body.get("roles"),
            "health": during.get("status"),
            "bridge": during.get("components", {}).get("bridge", {}).get("status")}
        roles_ok = (ready_status == 200 and ready_body.get("roles") == {
            "bridge": False, "ingest": True, "processor": True})
        health_ok = during.get("status") == "degraded" and outage_seen["bridge"] == "down"

        # what reached the world API: each received campaign's overdue event expired once
        def changed() -> dict[str, int]:
            events = _world_state(world_control)["events"]
            return {c: events[f"{c}-overdue"]["changed"] for c in received}

        per_campaign = faults.wait_or_last(
            changed, lambda got: all(n >= 1 for n in got.values()), timeout_s=180,
            interval_s=2, what="every bridged campaign's event expired at the world API")
        applied = sum(1 for n in per_campaign.values() if n >= 1)
        doubled = sum(1 for n in per_campaign.values() if n > 1)

        brokers = faults.brokers_of(stack)
        invalid = asyncio.run(faults.read_all(brokers, [topics.EVENTS_INVALID]))
        kept = [headers.decode(r.headers) | {"value": r.value}
                for r in invalid[topics.EVENTS_INVALID]
                if headers.decode(r.headers).get(headers.SOURCE_TOPIC) == big_channel]
        oversize_ok = oversize_received and len(kept) == 1 and (
            kept[0].get(headers.REASON) == "oversize"
            and kept[0].get(headers.ORIGINAL_SIZE) == str(len(huge))
            and kept[0].get(headers.ORIGINAL_SHA256) == hashlib.sha256(huge).hexdigest()
            and 0 < len(kept[0]["value"]) < 100_000 and huge.startswith(kept[0]["value"]))
        oversize_counted = faults.metric(worker, "cronbus_events_invalid_total",
                                         f'reason="oversize",topic="{PUBSUB_TOPIC}"')
        log = faults.log_facts(worker.process.log_path)
        unavailable_lines = faults.count_in_log(worker.process.log_path, "unavailable")
        alive = worker.process.alive()
        publisher.close()
        result = {
            "scenario": SCENARIO, "profile": profile,
            "sent": len(received), "applied": applied, "lost": len(received) - applied,
            "doubled": doubled,
            "restart_to_flow_ms": [round(s * 1000) for s in restart_to_flow],
            "quiet_s": figures["quiet_s"],
            "oversize_kept": oversize_ok, "oversize_counted": oversize_counted,
            "bridge_outage": outage_seen,
            "outage_warnings": unavailable_lines, "tracebacks": log["tracebacks"],
            "worker_alive": alive,
        }
        result["passed"] = bool(
            result["lost"] == 0 and doubled == 0 and len(received) == len(campaigns)
            and max(restart_to_flow) <= MAX_RESTART_TO_FLOW_S
            and oversize_ok and oversize_counted >= 1 and roles_ok and health_ok and alive
            # one warning per outage of the bridge's Redis (RESTARTS + the last one), not per try
            and unavailable_lines <= RESTARTS + 1 and log["tracebacks"] == 0)
        result["duration_s"] = round(time.monotonic() - started, 1)
        return result
    finally:
        if worker is not None:
            worker.stop()
        bridge_redis.stop()
        stack.stop()
