"""Helpers of the fault scenarios R3, R4, R5 and R7: a Redis of their own to stop and start on
one port, the stack around it, the benchmarks' one-call job type as load, and counting what the
development APIs applied (their own records, never a worker's metrics).

Everything started here is stopped by pid (``ManagedProcess``), in the scenario's ``finally``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

# shared with the other scenarios, named here too for the fault scenarios that use faults.*
from chaos.stack import ScenarioFailed as ScenarioFailed
from chaos.stack import wait_for as wait_for
from chaos.stack import wait_or_last as wait_or_last
from cronbus.clients.devstack.harness import DevStack, WorkerProcess
from cronbus.clients.devstack.redis_server import OwnRedis as OwnRedis
from cronbus.clients.kafka import connect
from cronbus.streams import topics
from cronbus.streams.jobs import Job, job_id_for
from cronbus.streams.settings import Settings, load_settings

REPO = Path(__file__).resolve().parent.parent
BENCH_DIR = REPO / "bench"
# the benchmarks' job type of one runJob call (bench/bench_job_types.py): the scenarios' load
JOB_TYPE = "bench-call"
JOB_MODULE = "bench_job_types"


def lean_stack(work_dir: Path, *, broker_on_s3: bool = False,
               apis: tuple[str, ...] = ("api",)) -> DevStack:
    """The development stack with only the development APIs a scenario's job types call
    (``api``, ``world``, ``notifications``): each is a process to start on 2 shared cores."""
    stack = DevStack(work_dir / "stack", broker_on_s3=broker_on_s3)
    for name in ("api", "world", "notifications"):
        if name not in apis:
            setattr(stack, name, None)
    return stack


def stack_with_own_redis(work_dir: Path) -> tuple[DevStack, OwnRedis]:
    """The development stack (the development API only) whose Redis is the scenario's own (the
    shared one stays up), started."""
    stack = lean_stack(work_dir)
    own = OwnRedis(stack.log_dir, name="redis")
    stack.redis = own  # type: ignore[assignment]  # the same start/stop/url
    stack.start()
    return stack, own


def worker_env(stack: DevStack, work_dir: Path, *, job_types: str = JOB_TYPE,
               **settings: str) -> dict[str, str]:
    """A scenario worker's settings: the stack, the benchmarks' job type module, a namespace
    and app id of its own, the settings given (by field name)."""
    env = {**stack.env(),
           Settings.env_name("app_id"): f"chaos-{uuid.uuid4().hex[:6]}",
           Settings.env_name("redis_namespace"): f"chaos-{uuid.uuid4().hex[:6]}",
           Settings.env_name("data_dir"): str(work_dir / "data"),
           Settings.env_name("job_types"): job_types,
           Settings.env_name("job_modules"): f"cronbus.families,{JOB_MODULE}",
           Settings.env_name("broker_session_timeout_s"): "6",
           Settings.env_name("broker_rebalance_timeout_s"): "4",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(BENCH_DIR), str(REPO),
                                                       os.environ.get("PYTHONPATH")]))}
    env.update({Settings.env_name(name): value for name, value in settings.items()})
    return env


def start_worker(name: str, env: dict[str, str], work_dir: Path, roles: Iterable[str],
                 timeout_s: float = 120.0) -> WorkerProcess:
    return WorkerProcess(name, env, work_dir / "logs", tuple(roles)).start(timeout_s)


def brokers_of(stack: DevStack) -> Any:
    return load_settings(broker_url=stack.broker_url).kafka


# --- load ------------------------------------------------------------------------------------


def bench_jobs(run: str, n: int, *, tenants: int = 50) -> list[Job]:
    now = datetime.now(UTC)
    return [Job(job_id=job_id_for(f"t{i % tenants}", JOB_TYPE, f"chaos:{run}:{i}"),
                tenant_id=f"t{i % tenants}", type=JOB_TYPE, triggered_by="event",
                scheduled_at=now, payload={"n": i}) for i in range(n)]


async def produce_steadily(brokers: Any, records: list[tuple[str, bytes, bytes]], *,
                           seconds: float) -> None:
    """Send ``(topic, key, value)`` records spread evenly over ``seconds``, each acknowledged."""
    producer = connect.producer(brokers, linger_ms=5)
    await producer.start()
    try:
        started = time.monotonic()
        every = seconds / max(1, len(records))
        pending = []
        for i, (topic, key, value) in enumerate(records):
            wait = started + i * every - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            pending.append(await producer.send(topic, key=key, value=value))
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


# --- what reached the APIs -------------------------------------------------------------------


def applied_keys(control_url: str) -> dict[str, int]:
    """How many times each Idempotency-Key's effect was applied, as the development API saw."""
    return dict(httpx.get(f"{control_url}/applied", timeout=60).json())


def applied_and_exported(control_url: str) -> tuple[dict[str, int], set[str]]:
    """What the development API applied: each Idempotency-Key's applications, and the job ids of
    the exports it applied for the scenarios' export events (their tenants are ``ev-*``)."""
    applied = applied_keys(control_url)
    exported = {r["job_id"] for r in httpx.get(f"{control_url}/requests", timeout=60).json()
                if str(r.get("tenant_id", "")).startswith("ev-") and r.get("applied")}
    return applied, exported


def totals(tallies: Iterable[dict[str, int]], events: int, exported: set[str]) -> dict[str, int]:
    """A scenario's sent, applied, lost and doubled over the :func:`tally` of each kind of its
    keyed jobs and its ``events`` export events (of which ``exported`` were applied)."""
    counted = list(tallies)
    sent = sum(t["sent"] for t in counted) + events
    got = sum(t["applied"] for t in counted) + min(len(exported), events)
    return {"sent": sent, "applied": got, "lost": sent - got,
            "doubled": sum(t["doubled"] for t in counted)}


def dead_lettered(brokers: Any, job_types: Iterable[str] = (JOB_TYPE, "export")) -> int:
    """Records on the dead-letter topics of these job types."""
    letters = asyncio.run(read_all(
        brokers, [topics.dead_letter_topic(topics.job_topic(t)) for t in job_types], idle_s=1.0))
    return sum(len(v) for v in letters.values())


def calls_per_key(control_url: str) -> Counter[str]:
    """Calls the development API answered per job id (repeats of an applied key included)."""
    found: Counter[str] = Counter()
    for request in httpx.get(f"{control_url}/requests", timeout=60).json():
        job_id = request.get("job_id")
        if job_id:
            found[job_id] += 1
    return found


def tally(expected: Iterable[str], applied: dict[str, int]) -> dict[str, int]:
    """sent, applied (expected keys applied at least once), lost, doubled (applied twice or
    more: the API applies a key once, so this counts a broken idempotency)."""
    wanted = set(expected)
    got = {key for key in wanted if applied.get(key, 0) >= 1}
    return {"sent": len(wanted), "applied": len(got), "lost": len(wanted - got),
            "doubled": sum(1 for key in wanted if applied.get(key, 0) > 1)}


# --- a worker, seen from outside -------------------------------------------------------------


def health(worker: WorkerProcess) -> dict[str, Any]:
    try:
        return dict(httpx.get(f"{worker.base_url}/health", timeout=10).json())
    except (httpx.HTTPError, ValueError) as exc:
        return {"status": "no answer", "error": str(exc)}


def ready(worker: WorkerProcess) -> tuple[int, dict[str, Any]]:
    try:
        answer = httpx.get(f"{worker.base_url}/ready", timeout=10)
        return answer.status_code, dict(answer.json())
    except (httpx.HTTPError, ValueError) as exc:
        return 0, {"error": str(exc)}


def metric(worker: WorkerProcess, name: str, labels: str = "") -> float:
    """A sample of the worker's /metrics (``labels`` as exposed, e.g. 'reason="x",topic="y"')."""
    text = worker.metrics_text()
    sample = f"{name}{{{labels}}}" if labels else name
    found = re.search(rf"^{re.escape(sample)} (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def rss_mb(pid: int | None) -> float:
    if pid is None:
        return 0.0
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def log_facts(path: Path) -> dict[str, Any]:
    """Lines, bytes and tracebacks of a worker's log."""
    text = path.read_text(errors="replace") if path.exists() else ""
    return {"log_lines": text.count("\n"), "log_bytes": len(text.encode()),
            "tracebacks": text.count("Traceback (most recent call last)")}


def count_in_log(path: Path, needle: str) -> int:
    return path.read_text(errors="replace").count(needle) if path.exists() else 0


# --- reading topics back ---------------------------------------------------------------------


async def read_all(brokers: Any, topic_names: Iterable[str], *, idle_s: float = 2.0,
                   timeout_s: float = 120.0) -> dict[str, list[ConsumerRecord]]:
    """Every record of each topic from the start (Tansu's latest offset is a batch's base + 1:
    read until a fetch stays empty for ``idle_s``)."""
    names = list(topic_names)
    found: dict[str, list[ConsumerRecord]] = {name: [] for name in names}
    consumer = AIOKafkaConsumer(**connect.access(brokers).aiokafka_options(),
                                enable_auto_commit=False, group_id=None,
                                auto_offset_reset="earliest",
                                max_partition_fetch_bytes=connect.MAX_PARTITION_FETCH_BYTES,
                                fetch_max_bytes=64 * 1024 * 1024)
    await consumer.start()
    try:
        await consumer.topics()  # metadata of every topic, so their partitions are known
        parts: list[TopicPartition] = []
        for name in names:
            for partition in sorted(consumer.partitions_for_topic(name) or ()):
                parts.append(TopicPartition(name, partition))
        if not parts:
            return found
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        # at least up to what the broker says is the end (Tansu's end may be short of the last
        # batch's records: then the idle wait reads the rest)
        ends = await consumer.end_offsets(parts)
        deadline = time.monotonic() + timeout_s
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500, max_records=10_000)
            got = [r for rs in batch.values() for r in rs]
            if got:
                quiet_since = time.monotonic()
                for record in got:
                    found[record.topic].append(record)
                continue
            behind = [tp for tp in parts if await consumer.position(tp) < ends[tp]]
            if not behind and time.monotonic() - quiet_since >= idle_s:
                break
    finally:
        with contextlib.suppress(Exception):
            await consumer.stop()
    return found


async def topic_metadata(brokers: Any, names: Iterable[str]) -> dict[str, int]:
    """Partitions of each topic the broker knows (0 for one it does not)."""
    consumer = AIOKafkaConsumer(**connect.access(brokers).aiokafka_options(), group_id=None)
    await consumer.start()
    try:
        await consumer.topics()
        return {name: len(consumer.partitions_for_topic(name) or ()) for name in names}
    finally:
        await consumer.stop()


def job_topic_records(jobs: list[Job]) -> list[tuple[str, bytes, bytes]]:
    return [(topics.job_topic(job.type), job.tenant_id.encode(), job.encode()) for job in jobs]


def as_json_line(result: dict[str, Any]) -> str:
    return json.dumps(result, sort_keys=False, default=str)


@contextlib.contextmanager
def stopping(*parts: Any) -> Iterator[None]:
    """Stop each part (anything with ``stop()``) when leaving, whatever happened, last first."""
    try:
        yield
    finally:
        for part in reversed(parts):
            with contextlib.suppress(Exception):
                part.stop()
