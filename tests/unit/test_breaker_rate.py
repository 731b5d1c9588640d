"""The breaker's error-rate trip as the downstream client meets it (httpx's mock transport,
pybreaker's memory storage): every other call failing opens the circuit though no run of
failures reaches fail_max; the rate and fail_max due at once open it once; half-open is left to
pybreaker; a circuit closed again counts afresh; permanent errors are calls, not failures."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pybreaker
import pytest

from cronbus.clients.http.downstream import (
    CircuitOpen,
    DownstreamClient,
    DownstreamError,
    DownstreamUnavailable,
    make_breaker,
)
from cronbus.streams.metrics import Metrics

ANSWERS = {
    "s": lambda: httpx.Response(200, json={"data": {"x": True}}),
    "f": lambda: httpx.Response(503, text="down"),
    "p": lambda: httpx.Response(422, json={"errors": [{"message": "bad input"}]}),
}


class Transitions(pybreaker.CircuitBreakerListener):
    """Every state change the breaker announces, as (old, new)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str | None, str]] = []

    def state_change(self, cb: pybreaker.CircuitBreaker, old_state, new_state) -> None:  # type: ignore[no-untyped-def]
        self.seen.append((getattr(old_state, "name", None), new_state.name))


class Scripted:
    """A downstream client whose API answers from a script, with the breaker's alerts and
    state changes kept."""

    def __init__(self, *, fail_max: int = 100, error_rate: float = 0.5, min_calls: int = 10,
                 window_s: float = 30.0) -> None:
        self.now = 1000.0
        self.sent = 0
        self.alerts: list[str] = []
        self.metrics = Metrics()
        self._script: Iterator[str] = iter(())
        self.breaker = make_breaker(
            "api", fail_max=fail_max, reset_timeout_s=30, metrics=self.metrics,
            error_rate=error_rate, min_calls=min_calls, window_s=window_s,
            on_open=self.alerts.append, clock=lambda: self.now)
        self.transitions = Transitions()
        self.breaker.add_listener(self.transitions)
        self.client = DownstreamClient("http://api.test/graphql", breaker=self.breaker,
                                       metrics=self.metrics,
                                       transport=httpx.MockTransport(self._answer))

    def _answer(self, request: httpx.Request) -> httpx.Response:
        self.sent += 1
        return ANSWERS[next(self._script)]()

    async def run(self, script: str) -> list[type[DownstreamError] | None]:
        """Make one call per letter of ``script`` (s, f, p): what each ended in."""
        self._script = iter(script)
        ended: list[type[DownstreamError] | None] = []
        for _ in script:
            try:
                await self.client.graphql("mutation { x }", {}, idempotency_key="k")
                ended.append(None)
            except DownstreamError as exc:
                ended.append(type(exc))
        return ended

    @property
    def state(self) -> str:
        return str(self.breaker.current_state)


async def test_every_other_call_failing_opens_the_circuit_at_the_rate():
    api = Scripted(fail_max=5, min_calls=10)
    ended = await api.run("sf" * 5)
    assert api.state == "open"
    assert ended[-1] is DownstreamUnavailable  # the tripping call keeps its own error
    assert api.alerts == ["api"]
    assert api.transitions.seen == [("closed", "open")]
    assert await api.run("s") == [CircuitOpen]  # refused: nothing sent
    assert api.sent == 10
    assert b'cronbus_breaker_state{service="api"} 2.0' in api.metrics.exposition()


async def test_failures_below_the_rate_leave_it_closed():
    api = Scripted(fail_max=5, min_calls=10)
    ended = await api.run("sssf" * 10)  # 25 %
    assert ended.count(DownstreamUnavailable) == 10
    assert api.state == "closed" and api.alerts == [] and api.sent == 40


async def test_just_below_min_calls_it_stays_closed_then_trips_at_min_calls():
    api = Scripted(min_calls=10)
    await api.run("sf" * 4 + "s")  # 9 calls, 4 failed
    assert api.state == "closed"
    await api.run("f")  # 10 calls, 5 failed: exactly 50 %
    assert api.state == "open"


async def test_permanent_errors_are_calls_the_api_answered_not_failures():
    api = Scripted(min_calls=2)
    await api.run("pppff")  # 2 failures of 5 calls; counting only s and f it would be 2 of 2
    assert api.state == "closed"


async def test_fail_max_and_the_rate_due_at_once_open_it_once():
    api = Scripted(fail_max=3, min_calls=3)
    ended = await api.run("fff")
    assert ended == [DownstreamUnavailable, DownstreamUnavailable, CircuitOpen]  # pybreaker's trip
    assert api.alerts == ["api"]
    assert api.transitions.seen == [("closed", "open")]


async def test_consecutive_failures_still_trip_below_min_calls():
    api = Scripted(fail_max=3, min_calls=10)
    await api.run("fff")
    assert api.state == "open" and api.alerts == ["api"]


@pytest.mark.parametrize("probe, after", [("f", "open"), ("s", "closed")])
async def test_half_open_is_decided_by_pybreaker_once(probe, after):
    api = Scripted(min_calls=4)
    await api.run("ffsf")  # the rate trips
    api.breaker.half_open()  # the reset timeout passed
    await api.run(probe)
    assert api.state == after
    expected = [("closed", "open"), ("open", "half-open"), ("half-open", after)]
    assert api.transitions.seen == expected
    assert api.alerts == ["api"] * (2 if after == "open" else 1)


async def test_a_circuit_closed_again_counts_from_nothing():
    api = Scripted(min_calls=4)
    await api.run("ffsf")
    api.breaker.half_open()
    await api.run("s")  # the probe closes it; the four calls before are forgotten
    await api.run("ff")  # 2 of 3 since closing, below min_calls
    assert api.state == "closed"
    await api.run("s")  # 2 of 4 since closing
    assert api.state == "closed"  # a success cannot trip
    await api.run("f")  # 3 of 5
    assert api.state == "open"


async def test_outcomes_older_than_the_window_are_forgotten():
    api = Scripted(min_calls=4, window_s=30)
    await api.run("fff")
    api.now += 30.0
    await api.run("sssf")  # 1 of 4 in the window (4 of 7 with the old ones would trip)
    assert api.state == "closed"
    await api.run("ff")  # 3 of 6 in the window
    assert api.state == "open"


def test_the_rate_settings_reach_the_rule():
    breaker = make_breaker("api", fail_max=5, reset_timeout_s=30, metrics=Metrics(),
                           error_rate=0.25, min_calls=3, window_s=12.0)
    [rate] = [getattr(listener, "rate", None) for listener in breaker.listeners
              if hasattr(listener, "rate")]
    assert (rate.rate, rate.min_calls, rate.window_s) == (0.25, 3, 12.0)

