"""What one loaded schedule costs a ticker: bytes in its book, µs to parse and take on, and
CPU µs a fire costs outside I/O.

The bench's schedules (``bench/schedules.py``: half cron once a minute, half every minute)
are encoded as their records, then parsed and put into a :class:`TickerBook` as a take-on
does; tracemalloc counts what the book holds after a collection. ``--model`` parses every
record into the pydantic model (the way before the fast path), for comparison.

    python bench/schedule_bytes.py [--schedules 20000] [--model]
"""

from __future__ import annotations

import argparse
import gc
import json
import time
import tracemalloc
from datetime import UTC, datetime, timedelta

from aiokafka.producer.message_accumulator import BatchBuilder
from schedules import schedules  # bench/schedules.py

from cronbus.agents.schedules.book import TickerBook, plan
from cronbus.agents.schedules.directory import schedule_in
from cronbus.agents.schedules.loaded import LoadedSchedule, loaded_schedule
from cronbus.agents.schedules.ticker import Tick
from cronbus.streams.schedules import Schedule


def fire_cost(book: TickerBook, start: datetime) -> float:
    """CPU µs a fire costs the ticker outside I/O: a minute of 20 ms steps, each taking what is
    due, planning it, making its tick (id, value, appended to a record batch), its fire state's
    encoding, its run history entry, and settling it."""
    grace, poll = timedelta(seconds=2), timedelta(seconds=1)
    batch = BatchBuilder(512 * 1024, 0)
    fired = 0
    used = time.process_time()
    for step in range(1, 3001):
        now = start + timedelta(milliseconds=20 * step)
        for entry in book.due(now):
            outcome = plan(entry.schedule, entry.state, now, grace=grace, previous_active=False,
                           poll=poll)
            for fire_at in outcome.fires:
                tick = Tick(entry.schedule, fire_at)
                tick_id = tick.id
                if batch.append(key=b"k", value=tick.value(tick_id), timestamp=None) is None:
                    batch = BatchBuilder(512 * 1024, 0)
                tick.run(tick_id, 1.0).encode()
                fired += 1
            outcome.state.encode()
            book.settle(entry, outcome)
    return (time.process_time() - used) / max(1, fired) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--schedules", type=int, default=20_000)
    parser.add_argument("--model", action="store_true", help="parse into the pydantic model")
    args = parser.parse_args()
    now = datetime.now(UTC)
    records = [(s.key, s.encode()) for s in schedules(args.schedules, now, now + timedelta(minutes=1))]
    def parse(key: bytes, value: bytes) -> Schedule | LoadedSchedule:  # as the ticker does
        return schedule_in(key, value) if args.model else (
            loaded_schedule(key, value) or schedule_in(key, value))

    book = TickerBook()
    book.own(0)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    started = time.perf_counter()
    for key, value in records:
        book.put(0, parse(key, value), None, now)
    took = time.perf_counter() - started
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    # parse and put timed apart, without tracemalloc (it slows allocation down)
    started = time.perf_counter()
    parsed = [parse(key, value) for key, value in records]
    parse_s = time.perf_counter() - started
    again = TickerBook()
    again.own(0)
    started = time.perf_counter()
    for schedule in parsed:
        again.put(0, schedule, None, now)
    put_s = time.perf_counter() - started
    fire_us = fire_cost(again, now + timedelta(minutes=1))
    print(json.dumps({
        "schedules": args.schedules, "way": "model" if args.model else "fast",
        "bytes_per_schedule": round(held / args.schedules),
        "parse_us": round(parse_s / args.schedules * 1e6, 1),
        "put_us": round(put_s / args.schedules * 1e6, 1),
        "traced_take_on_s": round(took, 2), "fire_us": round(fire_us, 1),
    }))


if __name__ == "__main__":
    main()
