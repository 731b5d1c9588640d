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


async def waiters(gate: ServiceGate, count: int) -> list[asyncio.Task[None]]:
    tasks = [asyncio.create_task(gate.wait_open()) for _ in range(count)]
    await asyncio.sleep(0)
    return tasks


async def test_past_the_reset_timeout_one_job_probes_and_the_rest_wait_for_its_outcome():
    breaker = tripped_breaker(0.2)
    gate = ServiceGate(breaker, reset_timeout_s=0.2)
    gate.hold()
    waiting = await waiters(gate, 50)
    await asyncio.sleep(0.5)
    assert sum(t.done() for t in waiting) == 1 and gate.probes == 1  # the probe, only
    with breaker.calling():  # the probe's call succeeds: half-open -> closed
        pass
    await asyncio.wait_for(asyncio.gather(*waiting), 1)
    assert gate.is_open and gate.probes == 1


async def test_a_failed_probe_shuts_the_gate_for_another_window_then_one_probes_again():
    breaker = tripped_breaker(0.2)
    gate = ServiceGate(breaker, reset_timeout_s=0.2)
    gate.hold()
    waiting = await waiters(gate, 10)
    await asyncio.sleep(0.4)
    assert sum(t.done() for t in waiting) == 1
    with pytest.raises(pybreaker.CircuitBreakerError), breaker.calling():
        raise ConnectionError("still down")  # half-open -> open
    gate.hold()  # as the processor does on an outage
    await asyncio.sleep(0.1)
    assert sum(t.done() for t in waiting) == 1 and not gate.is_open
    await asyncio.sleep(0.6)
    assert sum(t.done() for t in waiting) == 2 and gate.probes == 2
    gate.close()


async def test_a_probe_that_never_calls_hands_the_probe_on():
    gate = ServiceGate(tripped_breaker(0.1), reset_timeout_s=0.1, probe_patience_s=0.3)
    gate.hold()
    waiting = await waiters(gate, 3)
    await asyncio.sleep(0.35)
    assert sum(t.done() for t in waiting) == 1  # its job was done already: no call, no word
    await asyncio.sleep(0.45)
    assert sum(t.done() for t in waiting) == 2
    gate.close()
    await asyncio.wait_for(asyncio.gather(*waiting), 1)


async def test_another_workers_successful_probe_opens_the_gate_on_poll():
    breaker = tripped_breaker(30)
    gate = ServiceGate(breaker, reset_timeout_s=30)
    gate.hold()
    breaker._state_storage.state = pybreaker.STATE_CLOSED  # as a sync of the shared state does
    gate.poll()
    assert gate.is_open
