"""The development APIs' fail switch: the next N calls, or every k-th call (an API failing
intermittently), through its control endpoint on the real app (in process)."""

from __future__ import annotations

import httpx

from cronbus.clients.devstack.dev_api import FailSwitch, Failure, create_dev_api

HEALTH = {"query": "{ health }"}


def statuses(switch: FailSwitch, calls: int) -> list[int]:
    return [failure.status if (failure := switch.take()) else 200 for _ in range(calls)]


def test_the_next_n_calls_fail_then_none():
    switch = FailSwitch(Failure(503, times=2))
    assert statuses(switch, 4) == [503, 503, 200, 200]


def test_every_kth_call_fails_and_times_counts_failures():
    switch = FailSwitch(Failure(500, times=2, every=3))
    assert statuses(switch, 9) == [200, 200, 500, 200, 200, 500, 200, 200, 200]
    assert switch.failure is None


def test_every_other_call_fails_until_told_to_stop():
    switch = FailSwitch(Failure(500, times=None, every=2))
    assert statuses(switch, 6) == [200, 500] * 3
    assert switch.failure is not None


async def test_the_control_endpoint_sets_every_and_refuses_nonsense():
    transport = httpx.ASGITransport(app=create_dev_api())
    async with httpx.AsyncClient(transport=transport, base_url="http://dev-api") as client:
        told = await client.post("/_control/fail", json={"status": 502, "every": 2})
        assert told.json()["failing"]["every"] == 2
        got = [(await client.post("/graphql", json=HEALTH)).status_code for _ in range(4)]
        assert got == [200, 502, 200, 502]
        refused = await client.post("/_control/fail", json={"status": 500, "every": 0})
        assert refused.status_code == 400
        await client.delete("/_control/fail")
        assert (await client.post("/graphql", json=HEALTH)).status_code == 200
