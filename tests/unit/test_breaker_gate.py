"""The gate in front of a service: shut while its breaker is open, open again after the reset
timeout (a timer, no polling loop), shut by a trip seen in the shared state."""

from __future__ import annotations

import asyncio
import time

import pybreaker
import pytest

from cronbus.agents.processing.breaker_gate import ServiceGate


def tripped_breaker(reset_timeout_s: float) -> pybreaker.CircuitBreaker:
    breaker = pybreaker.CircuitBreaker(fail_max=1, reset_timeout=reset_timeout_s, name="api")
    with pytest.raises(pybreaker.CircuitBreakerError), breaker.calling():
        raise ConnectionError("down")
    assert breaker.current_state == "open"
    return breaker


async def test_a_refused_call_shuts_the_gate_until_the_reset_timeout():
    gate = ServiceGate(tripped_breaker(0.5), reset_timeout_s=0.5)
    started = time.monotonic()
    gate.hold()
    assert not gate.is_open
    await asyncio.wait_for(gate.wait_open(), 3)
    assert 0.4 <= time.monotonic() - started <= 1.5
    assert gate.shut_count == 1


async def test_poll_notices_a_breaker_opened_elsewhere():
    breaker = pybreaker.CircuitBreaker(fail_max=1, reset_timeout=30, name="api")
    gate = ServiceGate(breaker, reset_timeout_s=30)
    gate.poll()
    assert gate.is_open  # closed breaker: nothing to do
    with pytest.raises(pybreaker.CircuitBreakerError), breaker.calling():
        raise ConnectionError("down")  # as another worker's trip would set the shared state
    gate.poll()
    assert not gate.is_open
    gate.close()
    assert gate.is_open


async def test_a_breaker_past_its_reset_timeout_lets_the_probe_through():
    breaker = tripped_breaker(0.05)
    await asyncio.sleep(0.1)
    gate = ServiceGate(breaker, reset_timeout_s=0.05)
    gate.poll()
    assert gate.is_open  # open, but due for its half-open probe: the gate does not shut
