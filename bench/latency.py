"""Latency benchmark: immediate events published one at a time at a steady rate, each becoming
one job of one downstream call; against the BullMQ peer's latency at the same rate and
concurrency, in one run on one machine.

cronbus: ``--rate`` events a second for ``--seconds`` over 100 tenants, published one at a
time with the product's :class:`EventPublisher` to the benchmarks' own event topic
(``bench-pinged``, no debounce: bench/bench_job_types.py); one worker (``--roles``, by default
ingest and processor in one process, as ``cronbus worker`` runs them) turns each into a
``bench-latency`` job and calls the same nginx the jobs benchmark calls, ``--concurrency`` in
flight. A job's latency runs from the start of its event's publish call to the moment the
processor has the downstream answer (the job type notes it, bench/bench_job_types.py). Both
times are ``time.monotonic()``: CLOCK_MONOTONIC, one system-wide clock on Linux, read by the
bench's process and by the worker's on this one host.

The peer: ``run-peer-latency.sh RATE SECONDS CONCURRENCY`` (from the start of ``queue.add()`` to
its worker having the answer). Prints one JSON line with both sides' p50/p90/p99/max, their p99
ratio and the load average.

    python bench/latency.py [--rate 1000] [--seconds 30] [--concurrency 50] [--peer-dir ../shared/bench]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import redis

# the benchmarks' folder is the script's: its modules import as top-level ones
from bench_job_types import ANSWERS_FILE, BenchPinged
from jobs import cpu_seconds, ensure_downstream, peer_result, worker_env

from cronbus.clients.devstack.harness import DevStack, WorkerProcess
from cronbus.clients.kafka.publisher import EventPublisher
from cronbus.streams.settings import Settings, load_settings

JOB_TYPE = "bench-latency"
TENANTS = 100
TARGET_P99_MS = 50.0


def quantiles(latencies_ms: list[float]) -> dict[str, float]:
    """p50/p90/p99/max as the peer computes them (the sorted value at floor(p * n))."""
    ordered = sorted(latencies_ms)

    def at(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))], 2)

    return {"p50_ms": at(0.50), "p90_ms": at(0.90), "p99_ms": at(0.99),
            "max_ms": round(ordered[-1], 2)}


async def publish(brokers: object, rate: float, n: int, run: str) -> tuple[list[float], float]:
    """Publish ``n`` events at ``rate`` a second, one at a time; returns each one's publish
    start (monotonic) and the rate achieved."""
    started: list[float] = [0.0] * n
    now = datetime.now(UTC)
    async with EventPublisher(brokers) as publisher:  # type: ignore[arg-type]
        t0 = time.monotonic()
        for i in range(n):
            event = BenchPinged(event_id=f"{run}-{i}", tenant_id=f"t{i % TENANTS}",
                                occurred_at=now, n=i)
            wait = t0 + i / rate - time.monotonic()
            if wait > 0.001:
                await asyncio.sleep(wait)
            started[i] = time.monotonic()
            await publisher.publish(event)
        achieved = n / (time.monotonic() - t0)
        await publisher.flush()
    return started, achieved


def answered(path: Path) -> dict[int, float]:
    """Each job's answer time, as the workers noted it (the first, if a job ran twice)."""
    times: dict[int, float] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            n, _, t = line.partition(" ")
            if t and int(n) >= 0:
                times.setdefault(int(n), float(t))
    return times


def run_cronbus(rate: float, seconds: float, concurrency: int, roles: list[str],
                processes: int) -> dict[str, float]:
    log_dir = Path(tempfile.mkdtemp(prefix="cronbus-bench-latency-"))
    answers = log_dir / "answers.txt"
    namespace = f"bench-{uuid.uuid4().hex[:6]}"
    n = round(rate * seconds)
    with DevStack(log_dir, with_api=False) as stack:
        status = redis.Redis.from_url(stack.redis.url)
        env = {**worker_env(stack, log_dir, namespace, concurrency // processes),
               Settings.env_name("job_types"): JOB_TYPE, ANSWERS_FILE: str(answers)}
        brokers = load_settings(broker_url=stack.broker_url).kafka
        workers = [WorkerProcess(f"worker-{i}", env, log_dir, roles=roles).start()
                   for i in range(processes)]
        pids = [w.process.proc.pid for w in workers if w.process.proc is not None]
        try:
            cpu_started = sum(cpu_seconds(p) for p in pids)
            started, achieved = asyncio.run(publish(brokers, rate, n, namespace))
            last, last_change = 0, time.monotonic()
            while last < n:
                time.sleep(0.25)
                now = int(status.hget(f"{namespace}:queue:{JOB_TYPE}", "completed") or 0)
                if now != last:
                    last, last_change = now, time.monotonic()
                elif time.monotonic() - last_change > 30:
                    sys.exit(f"the workers stalled at {last} of {n} jobs; logs: {log_dir}")
            cpu = sum(cpu_seconds(p) for p in pids) - cpu_started
        finally:
            for worker in workers:
                worker.stop()
            status.close()
    times = answered(answers)
    missing = [i for i in range(n) if i not in times]
    if missing:
        sys.exit(f"{len(missing)} job(s) have no answer time (e.g. {missing[:5]}); see {log_dir}")
    figures = quantiles([(times[i] - started[i]) * 1000 for i in range(n)])
    return {**figures, "jobs": n, "achieved_rate": round(achieved), "worker_cpu_s": cpu}


def run_peer(peer_dir: Path, rate: float, seconds: float, concurrency: int) -> dict[str, float]:
    return peer_result(peer_dir / "run-peer-latency.sh",
                       [f"{rate:g}", f"{seconds:g}", str(concurrency)], "peer latency benchmark")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=1000)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--roles", default="ingest,processor",
                        help="the roles of each worker process (comma-separated)")
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--peer-dir", type=Path, default=Path("../shared/bench"))
    parser.add_argument("--no-peer", action="store_true", help="measure cronbus only")
    args = parser.parse_args()
    nginx = ensure_downstream(args.peer_dir)
    loads = [os.getloadavg()[0]]
    try:
        ours = run_cronbus(args.rate, args.seconds, args.concurrency,
                           args.roles.split(","), args.processes)
        loads.append(os.getloadavg()[0])
        peer = (None if args.no_peer
                else run_peer(args.peer_dir, args.rate, args.seconds, args.concurrency))
        loads.append(os.getloadavg()[0])
    finally:
        if nginx is not None:
            nginx.terminate()
            nginx.wait(10)
    result: dict[str, object] = {
        "bench": "latency", "rate": args.rate, "seconds": args.seconds,
        "concurrency": args.concurrency, "tenants": TENANTS, "roles": args.roles,
        "cronbus_processes": args.processes, "jobs": ours["jobs"],
        "achieved_rate": ours["achieved_rate"],
        "p50_ms": ours["p50_ms"], "p90_ms": ours["p90_ms"], "p99_ms": ours["p99_ms"],
        "max_ms": ours["max_ms"], "worker_cpu_s": round(ours["worker_cpu_s"], 2),
        "peer_p50_ms": peer and peer["p50_ms"], "peer_p90_ms": peer and peer["p90_ms"],
        "peer_p99_ms": peer and peer["p99_ms"], "peer_max_ms": peer and peer["max_ms"],
        "peer_achieved_rate": peer and peer.get("achieved_rate"),
        "p99_ratio": peer and round(ours["p99_ms"] / peer["p99_ms"], 3),
        "target_p99_ms": TARGET_P99_MS,
        "clock": "CLOCK_MONOTONIC (time.monotonic) in the bench and worker processes",
        # the 1-minute load average at the start, after cronbus's run and after the peer's
        "load_avg": [round(x, 2) for x in loads],
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
