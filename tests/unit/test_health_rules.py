from __future__ import annotations

import pytest

from cronbus.agents.worker.health_rules import Component, breaker_status, overall, worker_ready


def up(name: str) -> Component:
    return Component(name, "up", 1.0)


def test_all_up_is_healthy():
    assert overall([up("kafka"), up("redis"), up("downstream")]) == "healthy"


def test_the_broker_down_is_unhealthy():
    assert overall([up("redis"), up("downstream"), Component("kafka", "down")]) == "unhealthy"


@pytest.mark.parametrize("name, status", [("downstream", "down"), ("bridge", "down"),
                                          ("breaker", "degraded"),
                                          # jobs wait for Redis: degraded, not to be restarted
                                          ("redis", "down")])
def test_other_trouble_is_degraded(name, status):
    parts = [up(n) for n in ("kafka", "redis") if n != name]
    assert overall([*parts, Component(name, status)]) == "degraded"


def test_an_open_or_probing_circuit_degrades():
    assert breaker_status("closed") == "up"
    assert breaker_status("open") == "degraded"
    assert breaker_status("half-open") == "degraded"


def test_latency_is_rounded_and_detail_kept():
    assert Component("redis", "up", 1.23456, {"x": 1}).as_dict() == {
        "status": "up", "latency_ms": 1.2, "x": 1}


def test_a_worker_is_ready_when_every_role_is():
    assert worker_ready({"ingest": True, "processor": True})
    assert not worker_ready({"ingest": True, "processor": False})


def test_the_bridge_waiting_for_its_redis_leaves_other_roles_ready():
    assert worker_ready({"processor": True, "bridge": False})
    assert not worker_ready({"processor": False, "bridge": True})
    # a worker of the bridge alone is as ready as its bridge
    assert not worker_ready({"bridge": False})
    assert worker_ready({"bridge": True})
