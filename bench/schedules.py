"""Schedules benchmark: N active schedules on one ticker worker; prints one JSON line with the
p50 and p99 fire lag and the worker's peak RSS.

Half are cron patterns firing once a minute at a second of their own (``* * * * * S``), half
are ``every_ms`` 60 000 anchored at a millisecond of their own: every minute each fires once,
spread over the minute. Fire lag is, per tick, the time the producer stamped on the
``cron-ticks`` record minus its fire time; the time this process received the record (an upper
bound: it adds the consumer's fetch) is reported beside it. The schedules start firing a minute
after they are written, once the worker has loaded them: the figure is the steady state, and
the time the worker took to start and load them is reported beside it.

    python bench/schedules.py [--schedules 100000] [--minutes 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import redis

from cronbus.clients.devstack.harness import DevStack, WorkerProcess
from cronbus.clients.kafka import connect
from cronbus.streams import topics
from cronbus.streams.schedules import Schedule
from cronbus.streams.settings import Settings, load_settings


def schedules(n: int, now: datetime, start: datetime) -> list[Schedule]:
    """Active from ``start`` on (so the worker has loaded them before the first fire)."""
    made = []
    for i in range(n):
        timing: dict[str, object]
        if i % 2:
            timing = {"cron": f"{i // 2 % 60} * * * * *", "start_at": start}
        else:
            timing = {"every_ms": 60_000,
                      "start_at": start + timedelta(milliseconds=(i * 7919) % 60_000)}
        made.append(Schedule.model_validate({
            "id": f"bench-{i}", "tenant_id": f"tenant-{i % 1000}", "name": f"bench {i}",
            "job_type": "settlement-growth", "revision_at": now, **timing}))
    return made


async def write(brokers: connect.Brokers, items: list[Schedule]) -> float:
    producer = connect.producer(brokers, linger_ms=20, max_batch_size=512_000)
    await producer.start()
    started = time.perf_counter()
    try:
        sends = [await producer.send(topics.SCHEDULES, key=s.key, value=s.encode()) for s in items]
        await asyncio.gather(*sends)
    finally:
        await producer.stop()
    return time.perf_counter() - started


async def measure(brokers: connect.Brokers, since: float, until: float
                  ) -> tuple[list[float], list[float], list[float]]:
    """Lags (s) of every tick with a fire time in [since, until): stamped, and received; and
    the fire times."""
    consumer = connect.reader(brokers, topics.CRON_TICKS, fetch_max_wait_ms=10)
    await consumer.start()
    stamped: list[float] = []
    received: list[float] = []
    fired: list[float] = []
    try:
        while time.time() < until + 5:
            batch = await consumer.getmany(timeout_ms=200)
            now = time.time()
            for records in batch.values():
                for record in records:
                    # the fire time alone, without parsing the whole tick (a million
                    # schedules are 16,700 ticks a second on this machine's two cores)
                    start = record.value.index(b'"fire_at":"') + 11
                    fire_at = datetime.fromisoformat(
                        record.value[start:record.value.index(b'"', start)].decode()).timestamp()
                    if since <= fire_at < until:
                        stamped.append(record.timestamp / 1000 - fire_at)
                        received.append(now - fire_at)
                        fired.append(fire_at)
    finally:
        await consumer.stop()
    return stamped, received, fired


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc status")


def quantile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 1000) - 1]


def forget_namespace(redis_url: str, namespace: str) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        batch: list[bytes] = []
        for key in client.scan_iter(match=f"{namespace}:*", count=10_000):
            batch.append(key)
            if len(batch) >= 10_000:
                client.unlink(*batch)
                batch.clear()
        if batch:
            client.unlink(*batch)
    finally:
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--schedules", type=int, default=100_000)
    parser.add_argument("--minutes", type=float, default=2.0)
    parser.add_argument("--dump", type=Path, help="write each tick's fire time and lag here")
    parser.add_argument("--load-allowance-s", type=float,
                        help="seconds from writing the schedules to their first fire (default: "
                             "60, or 200 µs a schedule if more: writing a million takes longer "
                             "than a minute, and the figure is the steady state)")
    args = parser.parse_args()
    if args.load_allowance_s is None:
        args.load_allowance_s = max(60.0, args.schedules * 0.0002)
    loads = [os.getloadavg()[0]]
    log_dir = Path(tempfile.mkdtemp(prefix="cronbus-bench-"))
    namespace = f"cronbus-bench-{uuid.uuid4().hex[:6]}"
    with DevStack(log_dir, with_api=False) as stack:
        env = {**stack.env(), Settings.env_name("app_id"): f"bench-{uuid.uuid4().hex[:6]}",
               Settings.env_name("redis_namespace"): namespace,
               Settings.env_name("data_dir"): str(log_dir / "data"),
               Settings.env_name("builtin_schedules_off"): "all",
               Settings.env_name("log_level"): "WARNING"}
        brokers = load_settings(broker_url=stack.broker_url).kafka  # CRONBUS_KAFKA_* too
        now = datetime.now(UTC)
        # the first fires come once the worker has surely loaded everything: the figure is
        # the steady state (what a restart costs is load_s, reported beside it)
        start = (now + timedelta(seconds=args.load_allowance_s)).replace(microsecond=0)
        write_s = asyncio.run(write(brokers, schedules(args.schedules, now, start)))
        started = time.perf_counter()
        worker = WorkerProcess("ticker", env, log_dir, roles=("ticker",)).start(timeout_s=300)
        load_s = time.perf_counter() - started
        try:
            assert worker.process.proc is not None
            since = max(time.time() + 1.0, start.timestamp())
            until = since + args.minutes * 60
            stamped, received, fired = asyncio.run(measure(brokers, since, until))
            if args.dump:
                args.dump.write_text("".join(f"{f:.3f} {lag:.4f}\n"
                                             for f, lag in zip(fired, stamped, strict=True)))
            rss = peak_rss_mb(worker.process.proc.pid)
        finally:
            worker.stop()
            # a fire state a schedule, kept for ever: a million of them must not stay in the
            # Redis the bench borrowed
            forget_namespace(stack.redis.url, namespace)
    expected = round(args.schedules * args.minutes)
    print(json.dumps({
        "bench": "schedules", "schedules": args.schedules, "minutes": args.minutes,
        "ticks": len(stamped), "ticks_expected": expected,
        "fire_lag_p50_ms": round(quantile(stamped, 0.5) * 1000, 1),
        "fire_lag_p99_ms": round(quantile(stamped, 0.99) * 1000, 1),
        "fire_lag_max_ms": round(max(stamped) * 1000, 1),
        "received_lag_p99_ms": round(quantile(received, 0.99) * 1000, 1),
        "worker_peak_rss_mb": round(rss, 1),
        "load_s": round(load_s, 1), "write_s": round(write_s, 1),
        # 100,000 schedules' targets, or a million's (issue 20: also start + load <= 60 s)
        **({"target_p99_ms": 250, "target_rss_mb": 500} if args.schedules <= 100_000 else
           {"target_p99_ms": 1000, "target_rss_mb": 1024, "target_load_s": 60}),
        # the 1-minute load average when the bench started and when it ended
        "load_avg": [round(x, 2) for x in (*loads, os.getloadavg()[0])],
    }))


if __name__ == "__main__":
    main()
