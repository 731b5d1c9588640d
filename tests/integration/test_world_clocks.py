"""A world clock per tenant on the real broker and Redis: moved forward by world-time-advanced
events only (an older or equal world time is counted, not applied), read through
`GET /clocks/{tenant}` (tenant-scoped) and `cronbus clocks get`, and kept across a kill -9 of
the worker owning it (the next owner goes on from the clock, not from zero)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import httpx

from cronbus.clients.kafka.publisher import EventPublisher
from cronbus.streams.events import WorldTimeAdvanced
from tests.integration.cli import run_cronbus
from tests.integration.kafka import eventually

TOKENS = "tok-c1:c1,tok-c2:c2"
C1 = {"Authorization": "Bearer tok-c1"}
C2 = {"Authorization": "Bearer tok-c2"}
DAWN = datetime(1492, 10, 12, 6, tzinfo=UTC)


async def advance(settings, *moves: tuple[str, datetime]) -> None:
    async with EventPublisher(settings.broker_url) as publisher:
        for event_id, world_time in moves:
            await publisher.publish(WorldTimeAdvanced(
                event_id=event_id, tenant_id="c1", occurred_at=datetime.now(UTC),
                world_time=world_time))
        await publisher.flush()


def counted(worker, name: str) -> float:
    found = re.search(rf"^{name} (\S+)$", worker.metrics_text(), re.M)
    return float(found.group(1)) if found else 0.0


def clock_of(worker, headers: dict[str, str] = C1) -> httpx.Response:
    return httpx.get(f"{worker.base_url}/clocks/c1", headers=headers, timeout=10)


async def test_a_tenants_world_clock_moves_only_forward_and_survives_a_kill_9(
    cronbus_env, settings, start_worker
):
    roles = ("ingest", "api")
    worker = start_worker(roles=roles, web_api_tokens=TOKENS,
                          broker_session_timeout_s="3", broker_rebalance_timeout_s="3")
    assert clock_of(worker).status_code == 404
    await advance(settings, ("a1", DAWN), ("a2", DAWN + timedelta(hours=2)),
                  ("old", DAWN + timedelta(hours=1)), ("a2-again", DAWN + timedelta(hours=2)))
    answer = await eventually(lambda: clock_of(worker),
                              lambda r: r.status_code == 200 and r.json()["advances"] == 2,
                              timeout_s=30, what="c1's clock at its second advance")
    clock = answer.json()
    assert datetime.fromisoformat(clock["world_time"]) == DAWN + timedelta(hours=2)
    assert clock["event_id"] == "a2"
    await eventually(lambda: counted(worker, "cronbus_world_clock_ignored_total"),
                     lambda n: n == 2, timeout_s=10, what="the older and the equal time counted")
    assert counted(worker, "cronbus_world_clock_advances_total") == 2
    assert counted(worker, "cronbus_world_clocks") == 1
    assert clock_of(worker, C2).status_code == 404, "another tenant's clock does not exist for it"

    printed = run_cronbus(cronbus_env, "clocks", "get", "c1")
    assert printed.returncode == 0, printed.stderr
    assert json.loads(printed.stdout)["event_id"] == "a2"
    assert run_cronbus(cronbus_env, "clocks", "get", "nobody").returncode == 1

    # the owner dies; the next one takes the clock over from its changelog, not from zero
    worker.kill()
    second = start_worker("second", roles=roles, web_api_tokens=TOKENS)
    await advance(settings, ("late", DAWN + timedelta(hours=1)), ("a3", DAWN + timedelta(days=365)))
    answer = await eventually(lambda: clock_of(second),
                              lambda r: r.status_code == 200 and r.json()["advances"] == 3,
                              timeout_s=60, what="c1's clock at its third advance")
    assert datetime.fromisoformat(answer.json()["world_time"]) == DAWN + timedelta(days=365)
    # the late one (and any event the first owner had not committed when it died, read again)
    assert counted(second, "cronbus_world_clock_ignored_total") >= 1
    assert counted(second, "cronbus_world_clocks") == 1
