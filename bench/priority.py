"""Priority benchmark: how soon HIGH jobs run behind a backlog of NORMAL ones.

A backlog of ``--backlog`` NORMAL jobs of one type (one POST each to the nginx downstream, as
``bench/jobs.py``) is published to ``jobs.<type>``; one processor worker (``--processes``) works
through it at ``--concurrency`` in flight. Once it is busy, ``--high`` HIGH jobs (priority 8) of
the same type are published one at a time, spread over ``--spread-s`` seconds, to the tier topic
the tier rule chooses (``jobs.<type>.high``).

Each high job's latency runs from just before its publish call to its completion, both read
from this machine's wall clock (``time.time()``): the bench stamps the publish; the worker, on
the same machine, stamps ``finished_at`` in the job's status hash in Redis as it records the
job completed (after the downstream answered). Normal throughput is the NORMAL jobs completed
per second from the first high publish to the last high completion (and, for comparison, over
as long a time just before, on the backlog alone). Prints one JSON line.

    python bench/priority.py [--backlog 50000] [--high 100] [--spread-s 3] [--concurrency 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import redis
from aiokafka import AIOKafkaProducer
from jobs import JOB_TYPE, ensure_downstream, finished, worker_env

from cronbus.clients.devstack.harness import DevStack, WorkerProcess
from cronbus.streams import priorities, topics
from cronbus.streams.jobs import Job, job_id_for

HIGH = priorities.NAMES["high"]
NORMAL = priorities.NAMES["normal"]


def job(run: str, i: int, priority: int) -> tuple[bytes, Job]:
    tenant = f"t{i % 100}"
    return tenant.encode(), Job(
        job_id=job_id_for(tenant, JOB_TYPE, f"bench-priority:{run}:{priority}:{i}"),
        tenant_id=tenant, type=JOB_TYPE, triggered_by="event", scheduled_at=datetime.now(UTC),
        payload={"n": i}, priority=priority)


async def publish_backlog(producer: AIOKafkaProducer, run: str, n: int) -> None:
    topic = topics.job_topic_for(JOB_TYPE, NORMAL)
    for i in range(n):
        key, one = job(run, i, NORMAL)
        await producer.send(topic, key=key, value=one.encode())
    await producer.flush()


async def publish_high(producer: AIOKafkaProducer, run: str, n: int, spread_s: float,
                       *, tiers: bool = True) -> dict[str, float]:
    """One at a time, evenly over ``spread_s``: each job's publish time by job id. Without
    ``tiers``, to the normal tier's topic (what a high job would meet without tier topics)."""
    # the one tier rule: jobs.<type>.high
    topic = topics.job_topic_for(JOB_TYPE, HIGH) if tiers else topics.job_topic(JOB_TYPE)
    published: dict[str, float] = {}
    started = time.monotonic()
    for i in range(n):
        await asyncio.sleep(max(0.0, started + i * spread_s / n - time.monotonic()))
        key, one = job(run, i, HIGH)
        published[one.job_id] = time.time()
        await producer.send_and_wait(topic, key=key, value=one.encode())
    return published


def finished_at(status: redis.Redis, namespace: str, job_ids: list[str]) -> dict[str, float]:
    pipe = status.pipeline(transaction=False)
    for job_id in job_ids:
        pipe.hmget(f"{namespace}:job:{job_id}", "state", "finished_at")
    done = {}
    for job_id, (state, at) in zip(job_ids, pipe.execute(), strict=True):
        if state == b"completed" and at is not None:
            done[job_id] = float(at)
    return done


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def run(backlog: int, high: int, spread_s: float, concurrency: int, processes: int,
        busy_after: int, tiers: bool) -> dict[str, object]:
    log_dir = Path(tempfile.mkdtemp(prefix="cronbus-bench-priority-"))
    namespace = f"bench-{uuid.uuid4().hex[:6]}"
    run_id = uuid.uuid4().hex[:6]
    with DevStack(log_dir, with_api=False) as stack:
        status = redis.Redis.from_url(stack.redis.url)
        env = worker_env(stack, log_dir, namespace, concurrency // processes)
        brokers = [stack.broker_url.removeprefix("kafka://")]
        workers = [WorkerProcess(f"worker-{i}", env, log_dir, roles=("processor",)).start()
                   for i in range(processes)]
        try:
            return asyncio.run(_measure(brokers, status, namespace, run_id, backlog, high,
                                        spread_s, busy_after, log_dir, tiers))
        finally:
            for worker in workers:
                worker.stop()
            status.close()


async def _measure(brokers: list[str], status: redis.Redis, namespace: str, run_id: str,
                   backlog: int, high: int, spread_s: float, busy_after: int, log_dir: Path,
                   tiers: bool) -> dict[str, object]:
    producer = AIOKafkaProducer(bootstrap_servers=brokers, linger_ms=5, max_batch_size=256_000)
    await producer.start()
    try:
        await publish_backlog(producer, run_id, backlog)
        deadline = time.monotonic() + 120
        while finished(status, namespace) < busy_after:  # the worker is busy with the backlog
            if time.monotonic() > deadline:
                sys.exit(f"the worker did not start on the backlog within 120 s; logs: {log_dir}")
            await asyncio.sleep(0.05)
        # the same worker's pace on the backlog alone, for comparison
        calm_started, calm_done = time.time(), finished(status, namespace)
        await asyncio.sleep(spread_s)
        done_before = finished(status, namespace)
        high_started = time.time()
        calm_per_s = (done_before - calm_done) / (high_started - calm_started)
        published = await publish_high(producer, run_id, high, spread_s, tiers=tiers)
        ids = list(published)
        done: dict[str, float] = {}
        deadline = time.monotonic() + 300
        while len(done) < len(ids):
            if time.monotonic() > deadline:
                sys.exit(f"only {len(done)} of {high} high jobs completed within 300 s; "
                         f"logs: {log_dir}")
            done.update(finished_at(status, namespace, [i for i in ids if i not in done]))
            await asyncio.sleep(0.05)
        done_after = finished(status, namespace)
        dead = int(status.hget(f"{namespace}:queue:{JOB_TYPE}", "dead_lettered") or 0)
    finally:
        await producer.stop()
    last_high = max(done.values())
    latencies_ms = [(done[i] - published[i]) * 1000 for i in ids]
    normal_done = done_after - done_before - high  # finished() counts the high jobs too
    window_s = max(last_high, time.time() - 0.05) - high_started
    return {
        "high_p50_ms": round(statistics.median(latencies_ms), 1),
        "high_p99_ms": round(percentile(latencies_ms, 0.99), 1),
        "high_max_ms": round(max(latencies_ms), 1),
        "normal_jobs_per_s": round(normal_done / window_s),
        "normal_jobs_per_s_before_high": round(calm_per_s),
        "high_jobs": high, "backlog": backlog,
        "backlog_left_when_high_done": backlog - (done_after - high),
        "window_s": round(window_s, 2), "dead_lettered": dead,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backlog", type=int, default=50_000)
    parser.add_argument("--high", type=int, default=100)
    parser.add_argument("--spread-s", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--busy-after", type=int, default=2_000,
                        help="backlog jobs completed before the high jobs are published")
    parser.add_argument("--no-tiers", action="store_true",
                        help="publish the high jobs to jobs.<type>: the same run without tiers")
    parser.add_argument("--peer-dir", type=Path, default=Path("../shared/bench"),
                        help="where the nginx downstream's configuration is")
    args = parser.parse_args()
    nginx = ensure_downstream(args.peer_dir)
    try:
        result = run(args.backlog, args.high, args.spread_s, args.concurrency, args.processes,
                     args.busy_after, not args.no_tiers)
    finally:
        if nginx is not None:
            nginx.terminate()
            nginx.wait(10)
    print(json.dumps({"bench": "priority", "tiers": not args.no_tiers, **result, "target_high_p99_ms": 1000,
                      "concurrency": args.concurrency, "processes": args.processes,
                      "load_average": round(os.getloadavg()[0], 2)}))


if __name__ == "__main__":
    main()
