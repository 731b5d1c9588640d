"""The ticker's overlapping steps, with a broker and a Redis that answer when told: a step is
planned while the one before waits for its acknowledgement, fire states are saved in order and
only once their ticks (and every earlier step's) are on the broker, and a step whose ticks fail
takes back its plans and every later step's."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from cronbus.agents.schedules.book import FireState
from cronbus.agents.schedules.ticker import Ticker
from cronbus.streams.metrics import Metrics
from cronbus.streams.schedules import Schedule
from cronbus.streams.settings import load_settings

T0 = datetime(2026, 6, 1, 12, tzinfo=UTC)


class Batch:
    def __init__(self) -> None:
        self.values: list[bytes] = []

    def append(self, *, key: bytes, value: bytes, timestamp: None) -> object:
        self.values.append(value)
        return object()


class Broker:
    """A producer whose every batch waits until the test acknowledges (or fails) it."""

    def __init__(self) -> None:
        self.sent: list[tuple[Batch, asyncio.Future[None]]] = []

    def create_batch(self) -> Batch:
        return Batch()

    async def send_batch(self, batch: Batch, topic: str, *, partition: int
                         ) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.sent.append((batch, future))
        return future


class Pipeline:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self.writes: list[tuple[str, dict[bytes, bytes]]] = []

    async def __aenter__(self) -> Pipeline:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    def hset(self, key: str, mapping: dict[bytes, bytes]) -> None:
        self.writes.append((key, dict(mapping)))

    async def execute(self) -> list[Any]:
        for key, mapping in self.writes:
            self.redis.hashes.setdefault(key, {}).update(mapping)
            self.redis.saves.append(mapping)
        return [len(m) for _, m in self.writes]


class Redis:
    def __init__(self) -> None:
        self.hashes: dict[str, dict[bytes, bytes]] = {}
        self.saves: list[dict[bytes, bytes]] = []

    def pipeline(self, transaction: bool = False) -> Pipeline:
        return Pipeline(self)

    def register_script(self, script: str) -> None:
        return None


class Runs:
    def key(self, tenant_id: str, schedule_id: str) -> str:
        return f"runs:{tenant_id}/{schedule_id}"

    async def record_entries(self, entries: list[tuple[str, str]]) -> None:
        return None


def a_ticker(clock: list[float]) -> tuple[Ticker, Broker, Redis, Schedule]:
    redis = Redis()
    ticker = Ticker(load_settings(), None, Metrics(), redis, None,  # type: ignore[arg-type]
                    clock=lambda: clock[0])
    broker = Broker()
    ticker._producer = broker  # type: ignore[assignment]
    ticker.runs = Runs()  # type: ignore[assignment]
    schedule = Schedule.model_validate({"id": "s1", "tenant_id": "acme", "name": "n",
                                        "job_type": "bank-sync", "every_ms": 1000,
                                        "revision_at": T0})
    ticker.book.own(0)
    ticker.book.put(0, schedule, None, T0)
    return ticker, broker, redis, schedule


def saved(redis: Redis, ticker: Ticker, schedule: Schedule) -> FireState | None:
    raw = redis.hashes.get(ticker.state_key(0), {}).get(schedule.key)
    return FireState.decode(raw) if raw else None


async def settle_tasks() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def test_a_step_is_planned_while_the_one_before_waits_and_states_are_saved_in_order():
    async def scenario() -> None:
        clock = [(T0 + timedelta(seconds=1)).timestamp()]
        ticker, broker, redis, schedule = a_ticker(clock)
        await ticker._fire_due()
        clock[0] += 1
        await ticker._fire_due()  # planned from the first step's state, not waiting for it
        assert len(broker.sent) == 2 and len(ticker._in_flight) == 2
        broker.sent[1][1].set_result(None)  # the later step is acknowledged first
        await settle_tasks()
        assert saved(redis, ticker, schedule) is None, "nothing saved before the first step"
        broker.sent[0][1].set_result(None)
        await settle_tasks()
        state = saved(redis, ticker, schedule)
        assert state is not None and state.fired == 2
        assert state.last_fire == T0 + timedelta(seconds=2)
        assert [FireState.decode(s[schedule.key]).fired for s in redis.saves] in ([1, 2], [2])
        await ticker._reap()
        assert not ticker._in_flight

    asyncio.run(scenario())


def test_a_step_whose_ticks_fail_takes_back_every_later_step_and_loses_no_tick():
    async def scenario() -> None:
        clock = [(T0 + timedelta(seconds=1)).timestamp()]
        ticker, broker, redis, schedule = a_ticker(clock)
        await ticker._fire_due()
        clock[0] += 1
        await ticker._fire_due()
        broker.sent[0][1].set_exception(RuntimeError("broker away"))
        broker.sent[1][1].set_result(None)  # acknowledged, but planned from the failed step
        await settle_tasks()
        failed = None
        try:
            await ticker._reap()
        except RuntimeError as exc:
            failed = exc
        assert failed is not None and not ticker._in_flight
        assert saved(redis, ticker, schedule) is None
        entry = ticker.book.entries[schedule.key]
        assert entry.state.fired == 0, "back to its state before the failed step"
        clock[0] += 1  # looked at again a second later: every fire time since, none lost
        await ticker._fire_due()
        fired = [v for batch, _ in broker.sent[2:] for v in batch.values]
        assert len(fired) == 3
        assert all(b'"fire_at":"2026-06-01T12:00:0%d+00:00"' % s in v
                   for s, v in zip((1, 2, 3), fired, strict=True))
        for _, future in broker.sent[2:]:
            future.set_result(None)
        await settle_tasks()
        state = saved(redis, ticker, schedule)
        assert state is not None and state.fired == 3

    asyncio.run(scenario())


def test_a_handover_waits_for_the_steps_in_flight_and_saves_their_states():
    async def scenario() -> None:
        clock = [(T0 + timedelta(seconds=1)).timestamp()]
        ticker, broker, redis, schedule = a_ticker(clock)
        await ticker._fire_due()
        drained = asyncio.ensure_future(ticker._drain())
        await settle_tasks()
        assert not drained.done(), "the step's ticks are not on the broker yet"
        broker.sent[0][1].set_result(None)
        await drained
        state = saved(redis, ticker, schedule)
        assert state is not None and state.fired == 1 and not ticker._in_flight

    asyncio.run(scenario())
