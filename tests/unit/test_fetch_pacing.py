"""The fetch wait's rules, and the two aiokafka names pacing is hooked on."""

from __future__ import annotations

import asyncio
import inspect
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.consumer.fetcher import Fetcher

from cronbus.agents.processing.engine import delayed_fetch_wait_ms
from cronbus.agents.processing.retry_policy import RetryPolicy
from cronbus.clients.kafka.fetch_pacing import FetchPacing, pace
from cronbus.streams.settings import Settings


def test_a_consumer_starts_at_the_idle_wait() -> None:
    assert FetchPacing(busy_ms=5, idle_ms=100).wait_ms == 100


def test_records_bring_the_wait_down_to_busy_at_once() -> None:
    pacing = FetchPacing(busy_ms=5, idle_ms=100)
    assert pacing.after_fetch(True) == 5
    assert pacing.after_fetch(True) == 5


def test_fetches_of_nothing_double_the_wait_back_to_idle() -> None:
    pacing = FetchPacing(busy_ms=5, idle_ms=100)
    pacing.after_fetch(True)
    assert [pacing.after_fetch(False) for _ in range(6)] == [10, 20, 40, 80, 100, 100]
    assert pacing.after_fetch(True) == 5


def test_a_fixed_pacing_never_moves() -> None:
    pacing = FetchPacing.fixed(100)
    assert {pacing.after_fetch(b) for b in (True, False, True)} == {100}


@pytest.mark.parametrize(("busy", "idle"), [(0, 100), (200, 100)])
def test_waits_out_of_order_are_refused(busy: int, idle: int) -> None:
    with pytest.raises(ValueError, match="busy"):
        FetchPacing(busy_ms=busy, idle_ms=idle)


def test_the_settings_name_a_busy_wait_above_the_idle_one() -> None:
    with pytest.raises(ValueError, match="CRONBUS_FETCH_BUSY_WAIT_MS=200"):
        Settings(fetch_busy_wait_ms=200, fetch_max_wait_ms=100)
    pacing = FetchPacing.of(Settings(fetch_busy_wait_ms=3, fetch_max_wait_ms=50))
    assert (pacing.busy_ms, pacing.idle_ms) == (3, 50)


def test_this_aiokafka_has_what_pacing_hooks_on() -> None:
    """An aiokafka that renames these would leave every consumer at the idle wait: fail here."""
    assert "_proc_fetch_request" in vars(Fetcher)
    assert inspect.iscoroutinefunction(Fetcher._proc_fetch_request)
    assert "self._fetch_max_wait_ms = fetch_max_wait_ms" in inspect.getsource(Fetcher.__init__)


class _FakeFetcher:
    """Only the two attributes :func:`pace` touches; the answers are scripted."""

    def __init__(self, answers: list[bool]) -> None:
        self._fetch_max_wait_ms = 100
        self.answers = answers
        self.waits: list[int] = []

    async def _proc_fetch_request(self, *_: Any) -> bool:
        self.waits.append(self._fetch_max_wait_ms)
        return self.answers.pop(0)


def test_each_fetch_is_sent_with_the_wait_the_last_answer_chose() -> None:
    fetcher = _FakeFetcher([True, True, False, False, True])
    assert pace(fetcher, FetchPacing(busy_ms=5, idle_ms=100))

    async def five_fetches() -> None:
        for _ in range(5):
            await fetcher._proc_fetch_request(None, 0, None)

    asyncio.run(five_fetches())
    assert fetcher.waits == [100, 5, 5, 10, 20]
    assert fetcher._fetch_max_wait_ms == 5


def test_a_fetcher_without_the_hooks_is_left_alone() -> None:
    assert not pace(object(), FetchPacing(busy_ms=5, idle_ms=100))


@pytest.mark.parametrize(("backoff_s", "idle_ms", "wait_ms"),
                         [(5.0, 100, 500), (0.4, 100, 200), (0.05, 100, 100), (5.0, 800, 800)])
def test_retry_topics_wait_half_their_shortest_delay_between_idle_and_500_ms(
        backoff_s: float, idle_ms: int, wait_ms: int) -> None:
    processor = SimpleNamespace(policy=RetryPolicy(retries=3, backoff_s=backoff_s))
    assert delayed_fetch_wait_ms(processor, idle_ms) == wait_ms  # type: ignore[arg-type]
