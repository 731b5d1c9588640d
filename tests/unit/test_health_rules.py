from __future__ import annotations

import pytest

from cronbus.agents.worker.health_rules import Component, breaker_status, overall


def up(name: str) -> Component:
    return Component(name, "up", 1.0)


def test_all_up_is_healthy():
    assert overall([up("kafka"), up("redis"), up("downstream")]) == "healthy"


@pytest.mark.parametrize("essential", ["kafka", "redis"])
def test_an_essential_component_down_is_unhealthy(essential):
    parts = [up(n) for n in ("kafka", "redis", "downstream") if n != essential]
    assert overall([*parts, Component(essential, "down")]) == "unhealthy"


@pytest.mark.parametrize("name, status", [("downstream", "down"), ("bridge", "down"),
                                          ("breaker", "degraded")])
def test_other_trouble_is_degraded(name, status):
    assert overall([up("kafka"), up("redis"), Component(name, status)]) == "degraded"


def test_an_open_or_probing_circuit_degrades():
    assert breaker_status("closed") == "up"
    assert breaker_status("open") == "degraded"
    assert breaker_status("half-open") == "degraded"


def test_latency_is_rounded_and_detail_kept():
    assert Component("redis", "up", 1.23456, {"x": 1}).as_dict() == {
        "status": "up", "latency_ms": 1.2, "x": 1}
