"""Reading topics back in tests, with a plain aiokafka consumer."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord

from cronbus.streams import topics
from cronbus.streams.schedules import Schedule

T = TypeVar("T")


async def read_topic(brokers: list[str], topic: str, *, idle_s: float = 1.0,
                     timeout_s: float = 15.0) -> list[ConsumerRecord]:
    """Every record on ``topic`` from the start, returning once nothing new came for ``idle_s``."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=brokers, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None)
    await consumer.start()
    records: list[ConsumerRecord] = []
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=int(idle_s * 1000))
            got = [r for part in batch.values() for r in part]
            if not got and records:
                break
            records.extend(got)
    finally:
        await consumer.stop()
    return records


async def eventually(probe: Callable[[], T | Awaitable[T]], done: Callable[[T], bool], *,
                     timeout_s: float, what: str, interval_s: float = 0.2) -> T:
    """Poll ``probe`` (a function, or a coroutine function) until ``done`` holds; fail naming
    ``what`` and the last value otherwise."""

    async def read() -> T:
        value = probe()
        return await value if inspect.isawaitable(value) else value  # type: ignore[return-value]

    deadline = time.monotonic() + timeout_s
    value = await read()
    while not done(value):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}; last: {value!r}")
        await asyncio.sleep(interval_s)
        value = await read()
    return value


async def write_schedules(brokers: list[str], schedules: list[Schedule]) -> None:
    """Straight onto the compacted ``schedules`` topic, as the API and the CLI write them."""
    producer = AIOKafkaProducer(bootstrap_servers=brokers, acks="all", linger_ms=5)
    await producer.start()
    try:
        sends = [await producer.send(topics.SCHEDULES, key=s.key, value=s.encode())
                 for s in schedules]
        await asyncio.gather(*sends)
    finally:
        await producer.stop()
