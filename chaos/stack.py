"""What the chaos scenarios share: the stack (Tansu broker, Redis, the development API), worker
processes to kill -9 and restart, and counting what the API applied (its own records, never a
worker's metrics). Every process started here is stopped by its pid."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import random
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self, TypeVar

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition

from chaos.job_types import PLAIN
from cronbus.clients.devstack.dev_api import DevApi
from cronbus.clients.devstack.harness import DevStack, WorkerProcess
from cronbus.clients.kafka import connect
from cronbus.streams import topics
from cronbus.streams.events import DomainEvent, encode_event, topic_of
from cronbus.streams.jobs import Job, job_id_for
from cronbus.streams.keys import tenant_key
from cronbus.streams.schedules import Schedule
from cronbus.streams.settings import Settings, load_settings

log = logging.getLogger("chaos.stack")

REPO_ROOT = Path(__file__).resolve().parent.parent
# the scenarios' own job and event types (chaos/job_types.py), loaded by the workers
JOB_MODULE = "chaos.job_types"
T = TypeVar("T")


class ScenarioFailed(AssertionError):
    """A scenario could not get to its counting (a worker did not start, nothing drained)."""


def wait_for(probe: Callable[[], T], done: Callable[[T], bool], *, timeout_s: float, what: str,
             interval_s: float = 0.5) -> T:
    """Probe until ``done(value)``; the last value. Raises :class:`ScenarioFailed` naming ``what``
    after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise ScenarioFailed(f"{what}: not within {timeout_s:.0f}s (last: {short(value)})")
        time.sleep(interval_s)


def wait_or_last(probe: Callable[[], T], done: Callable[[T], bool], *, timeout_s: float,
                 what: str, interval_s: float = 0.5) -> T:
    """:func:`wait_for`, but once ``timeout_s`` runs out the value probed once more instead of an
    error: a scenario then counts what is missing from it."""
    try:
        return wait_for(probe, done, timeout_s=timeout_s, what=what, interval_s=interval_s)
    except ScenarioFailed:
        return probe()


def short(value: object, limit: int = 300) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}..."


class ApiLedger:
    """The development API's own records: what was applied, how often, by whom, when."""

    def __init__(self, api: DevApi) -> None:
        self.api = api
        self.control_url = api.control_url

    def url_for(self, caller: str) -> str:
        """The API's URL for one worker: the API records ``caller`` with each request it gets."""
        return f"{self.api.url}?caller={caller}"

    def _get(self, path: str) -> Any:
        response = httpx.get(f"{self.control_url}/{path}", timeout=60)
        response.raise_for_status()
        return response.json()

    def requests(self) -> list[dict[str, Any]]:
        """Every request so far, in order: seq, at, caller, idempotency_key, status, applied."""
        return self._get("requests")  # type: ignore[no-any-return]

    def applied(self) -> dict[str, int]:
        """Idempotency-Key -> how many times its effect was applied."""
        return self._get("applied")  # type: ignore[no-any-return]

    def applied_count(self) -> dict[str, int]:
        """``keys`` applied, ``applications`` (over all keys), ``requests`` received."""
        return self._get("applied-count")  # type: ignore[no-any-return]

    def applied_inputs(self) -> dict[str, dict[str, Any]]:
        """Idempotency-Key -> the input its applied call carried (type, tenant, payload)."""
        return self._get("applied-inputs")  # type: ignore[no-any-return]

    def fail(self, status: int, times: int | None = None) -> None:
        httpx.post(f"{self.control_url}/fail", json={"status": status, "times": times},
                   timeout=10).raise_for_status()

    def stop_failing(self) -> None:
        httpx.delete(f"{self.control_url}/fail", timeout=10).raise_for_status()

    def delay(self, seconds: float) -> None:
        """Every call applied at once and answered ``seconds`` later (0: at once again)."""
        httpx.post(f"{self.control_url}/delay", json={"seconds": seconds},
                   timeout=10).raise_for_status()


@dataclass
class Tally:
    """What reached the API against what was sent, by logical unit (a job, an event, a fire):
    ``lost`` units no applied call covers, ``doubled`` units more than one applied key covers
    (or a key the API applied more than once)."""

    sent: int
    applied: int
    lost: list[str]
    doubled: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {"sent": self.sent, "applied": self.applied, "lost": len(self.lost),
                "doubled": len(self.doubled)}


def tally(expected: Iterable[str], covered: Iterable[str]) -> Tally:
    """``expected``: every unit sent; ``covered``: one entry per applied key per unit it covers
    (a unit twice in it was applied under two keys)."""
    wanted = set(expected)
    seen = Counter(covered)
    return Tally(sent=len(wanted), applied=sum(1 for unit in wanted if seen[unit] >= 1),
                 lost=sorted(unit for unit in wanted if not seen[unit]),
                 doubled=sorted(unit for unit, n in seen.items() if n > 1))


def metric_sum(text: str, name: str, **labels: str) -> float:
    """The sum of a metric's samples in a Prometheus exposition whose labels include ``labels``."""
    total = 0.0
    pattern = re.compile(rf"^{re.escape(name)}(?:\{{(.*)\}})?\s+(\S+)$")
    for line in text.splitlines():
        found = pattern.match(line)
        if not found:
            continue
        have = dict(re.findall(r'(\w+)="([^"]*)"', found.group(1) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            total += float(found.group(2))
    return total


def rss_mb(pid: int) -> float:
    """A process's resident memory (VmRSS) in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def _count_records(brokers: str, topics: Sequence[str], idle_s: float) -> dict[str, int]:
    """Records on each topic, read to the end (Tansu's end offset is the last batch's base + 1,
    so read until a fetch stays empty)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=brokers.removeprefix("kafka://"),
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                group_id=None)
    await consumer.start()
    counts = dict.fromkeys(topics, 0)
    try:
        existing = await consumer.topics()
        parts = [TopicPartition(t, p) for t in topics if t in existing
                 for p in (consumer.partitions_for_topic(t) or ())]
        if not parts:
            return counts
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < idle_s:
            batch = await consumer.getmany(timeout_ms=500)
            for tp, records in batch.items():
                counts[tp.topic] += len(records)
            if any(batch.values()):
                quiet_since = time.monotonic()
    finally:
        await consumer.stop()
    return counts


def count_records(brokers: str, topics: Sequence[str], idle_s: float = 2.0) -> dict[str, int]:
    """How many records each topic holds (e.g. dead letters)."""
    return asyncio.run(_count_records(brokers, topics, idle_s))


async def _produce(brokers: str, records: Iterable[tuple[str, bytes, bytes]]) -> int:
    producer = connect.producer(load_settings(broker_url=brokers).kafka, linger_ms=5,
                                max_batch_size=256_000)
    await producer.start()
    sent = 0
    try:
        for topic, key, value in records:
            await producer.send(topic, key=key, value=value)
            sent += 1
        await producer.flush()
    finally:
        await producer.stop()
    return sent


def produce(brokers: str, records: Iterable[tuple[str, bytes, bytes]]) -> int:
    """Send (topic, key, value) records and wait until the broker has them all; how many."""
    return asyncio.run(_produce(brokers, records))


class PacedProducer:
    """Sends records at a steady rate from a thread of its own (load that keeps coming while a
    scenario breaks something), until told to stop or out of records."""

    def __init__(self, brokers: str, records: Iterable[tuple[str, bytes, bytes]],
                 per_s: float) -> None:
        self.brokers = brokers
        self.records = iter(records)
        self.per_s = per_s
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="paced-producer", daemon=True)
        self.error: BaseException | None = None

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> int:
        """Stop sending; how many records the broker acknowledged."""
        self._stop.set()
        self._thread.join(60)
        if self.error is not None:
            raise ScenarioFailed(f"the load's producer failed: {self.error!r}")
        return self.sent

    def _run(self) -> None:
        try:
            asyncio.run(self._produce())
        except BaseException as exc:  # told to the scenario by stop()
            self.error = exc

    async def _produce(self) -> None:
        producer = connect.producer(load_settings(broker_url=self.brokers).kafka, linger_ms=5)
        await producer.start()
        try:
            tick_s, began = 0.25, time.monotonic()
            while not self._stop.is_set():
                due = int((time.monotonic() - began) * self.per_s) - self.sent
                batch = [record for _, record in zip(range(max(0, due)), self.records,
                                                     strict=False)]
                for topic, key, value in batch:
                    await producer.send(topic, key=key, value=value)
                await producer.flush()
                self.sent += len(batch)
                if due > 0 and not batch:
                    return  # out of records
                await asyncio.sleep(tick_s)
        finally:
            await producer.stop()


def event_record(event: DomainEvent) -> tuple[str, bytes, bytes]:
    return topic_of(event), tenant_key(event.tenant_id), encode_event(event)


def job_record(job: Job) -> tuple[str, bytes, bytes]:
    """A job straight onto its job topic, keyed by tenant, as a producer of jobs writes it."""
    return topics.job_topic(job.type), tenant_key(job.tenant_id), job.encode()


def schedule_record(schedule: Schedule) -> tuple[str, bytes, bytes]:
    """A schedule onto the compacted ``schedules`` topic, as the API and the CLI write it."""
    return topics.SCHEDULES, schedule.key, schedule.encode()


def plain_jobs(ref_prefix: str, job_ids: list[str]) -> Iterator[tuple[str, bytes, bytes]]:
    """Endless PLAIN job records, load that keeps coming (a :class:`PacedProducer`'s): tenants
    t0..t49, trigger refs ``{ref_prefix}:{n}``. Each job's id is appended to ``job_ids`` as it is
    made; the first ``sent`` of them are the ones the broker acknowledged."""
    for n in itertools.count():
        tenant = f"t{n % 50}"
        job_id = job_id_for(tenant, PLAIN, f"{ref_prefix}:{n}")
        job_ids.append(job_id)
        yield job_record(Job(job_id=job_id, tenant_id=tenant, type=PLAIN, triggered_by="event",
                             scheduled_at=datetime.now(UTC), payload={"n": n}))


def wait_applied(api: ApiLedger, sent: int, *, stall_s: float, scenario: str,
                 each: Callable[[], None] | None = None) -> None:
    """Wait until the API has applied ``sent`` keys; give up (logged) once no new key has been
    applied for ``stall_s``: the counting that follows says what is missing. ``each``: called
    every round of the wait (a scenario's sampling)."""
    last, last_change = -1, time.monotonic()
    while (keys := api.applied_count()["keys"]) < sent:
        if each is not None:
            each()
        if keys != last:
            last, last_change = keys, time.monotonic()
        elif time.monotonic() - last_change > stall_s:
            log.warning("%s: stalled at %d of %d applied", scenario, keys, sent)
            break
        time.sleep(1.0)


def plain_applied(job_ids: Iterable[str], inputs: dict[str, dict[str, Any]],
                  applications: dict[str, int]) -> tuple[Tally, int]:
    """The PLAIN jobs' tally by the API's applied inputs, and how many were doubled: a job
    applied under two keys, or a key the API applied more than once."""
    counted = tally(job_ids, (key for key, given in inputs.items() if given.get("type") == PLAIN))
    over_applied = sum(1 for n in applications.values() if n > 1)
    return counted, len(counted.doubled) + over_applied


def plain_dead_letters(brokers: str) -> int:
    """Records on the dead-letter topics of the PLAIN job's tiers."""
    dead = count_records(brokers, [topics.dead_letter_topic(t)
                                   for t in topics.tier_topics(PLAIN)])
    return sum(dead.values())


@dataclass
class Worker:
    """One ``cronbus worker`` slot: its name, settings and roles; restarted as a new process."""

    name: str
    env: dict[str, str]
    roles: tuple[str, ...]
    log_dir: Path
    process: WorkerProcess | None = None
    starts: int = 0

    def launch(self) -> WorkerProcess:
        """Start the process (a new one, a new web port) without waiting for it."""
        self.process = WorkerProcess(self.name, self.env, self.log_dir, self.roles)
        self.starts += 1
        self.process.process.start()
        return self.process

    def start(self, timeout_s: float = 180.0) -> Self:
        process = self.launch()
        process.process.wait_until(process.is_ready, timeout_s, "ready")
        return self

    @property
    def pid(self) -> int | None:
        return self.process.process.pid if self.process is not None else None

    def ready(self) -> bool:
        return self.alive() and self.process is not None and self.process.is_ready()

    def alive(self) -> bool:
        return self.process is not None and self.process.process.alive()

    def kill(self) -> None:
        """kill -9, as a crash."""
        if self.process is not None:
            self.process.kill()

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def metrics(self) -> str:
        assert self.process is not None
        return self.process.metrics_text()


def polled_metric(worker: Worker, name: str, **labels: str) -> float | None:
    """:func:`metric_sum` of a worker's /metrics now, or None when it does not answer (too busy
    for this poll: the next one will)."""
    try:
        return metric_sum(worker.metrics(), name, **labels)
    except Exception:
        return None


@dataclass
class WorkerPool:
    """Workers of one deployment (one app id); kills and restarts them by pid."""

    workers: list[Worker] = field(default_factory=list)
    kills: list[dict[str, Any]] = field(default_factory=list)
    _round: list[Worker] = field(default_factory=list)  # still to be killed this round

    def start_all(self, timeout_s: float = 180.0) -> Self:
        """Start every worker side by side (each takes seconds to import), wait for all."""
        for worker in self.workers:
            worker.launch()
        for worker in self.workers:
            assert worker.process is not None
            worker.process.process.wait_until(worker.process.is_ready, timeout_s, "ready")
        return self

    def kill_and_restart(self, rng: random.Random, *, wait_ready: bool = True) -> dict[str, Any]:
        """kill -9 a worker picked at random and start it again at once. Picked from a shuffled
        round of all workers: every worker is hit as often, in no set order. ``wait_ready``:
        return once the new process is ready; otherwise at once, so the next kill may find it
        starting, or the others rebalancing (:meth:`wait_all_ready` waits for them)."""
        if not self._round:
            self._round = rng.sample(self.workers, len(self.workers))
        worker = self._round.pop()
        pid, was_ready = worker.pid, worker.ready()
        killed_at = time.monotonic()
        worker.kill()
        process = worker.launch()
        kill: dict[str, Any] = {"worker": worker.name, "pid": pid, "was_ready": was_ready}
        if wait_ready:
            process.process.wait_until(process.is_ready, 180.0, "ready")
            kill["restart_s"] = round(time.monotonic() - killed_at, 1)
        self.kills.append(kill)
        log.info("kill -9 %s (pid %s, %s), restarted%s", worker.name, pid,
                 "ready" if was_ready else "not ready yet",
                 f" in {kill['restart_s']}s" if wait_ready else "")
        return kill

    def wait_all_ready(self, timeout_s: float = 180.0) -> float:
        """Wait until every worker is ready again; how long that took."""
        began = time.monotonic()
        for worker in self.workers:
            assert worker.process is not None
            worker.process.process.wait_until(worker.process.is_ready, timeout_s, "ready")
        return time.monotonic() - began

    def stop_all(self) -> None:
        for worker in self.workers:
            try:
                worker.stop()
            except Exception:  # stop the rest whatever one did
                log.exception("stopping %s", worker.name)


class ChaosStack:
    """The broker and Redis (DevStack) plus one development API; workers of one app id."""

    def __init__(self, work_dir: Path) -> None:
        self.work_dir = work_dir
        self.dev = DevStack(work_dir / "stack", with_api=False)
        self.api_process = DevApi(work_dir / "stack")
        self.api = ApiLedger(self.api_process)
        self.run_id = uuid.uuid4().hex[:8]
        self.pools: list[WorkerPool] = []

    def __enter__(self) -> Self:
        self.dev.start()
        try:
            self.api_process.start()
        except BaseException:
            self.dev.stop()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        for pool in self.pools:
            pool.stop_all()
        self.api_process.stop()
        self.dev.stop()

    @property
    def broker_url(self) -> str:
        return self.dev.broker_url

    def worker_env(self, **settings: str | int | float) -> dict[str, str]:
        """A worker's settings: this stack, this run's app id and Redis namespace, the chaos job
        types (chaos/job_types.py), quick rebalances, no built-in schedules; ``settings`` as
        CRONBUS_<NAME>."""
        base: dict[str, str | int | float] = {
            "app_id": f"chaos-{self.run_id}",
            "redis_namespace": f"chaos-{self.run_id}",
            "data_dir": str(self.work_dir / "data"),
            "job_modules": JOB_MODULE,
            "partitions": 4,
            "broker_rebalance_timeout_s": 4,
            "broker_session_timeout_s": 6,
            "builtin_schedules_off": "all",
            "log_level": "WARNING",
            **settings,
        }
        env = {**self.dev.env(), Settings.env_name("api_url"): self.api_process.url}
        env.update({Settings.env_name(name): str(value) for name, value in base.items()})
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT),
                                                          os.environ.get("PYTHONPATH")]))
        return env

    def pool(self, count: int, roles: Sequence[str] = (), *, name: str = "worker",
             tag_callers: bool = False, **settings: str | int | float) -> WorkerPool:
        """``count`` workers (not started) of this stack's app; ``tag_callers``: each calls the
        API under its own ``?caller=<name>`` so the API's records say who called."""
        pool = WorkerPool()
        for n in range(1, count + 1):
            worker_name = f"{name}-{n}"
            env = self.worker_env(**settings)
            if tag_callers:
                env[Settings.env_name("api_url")] = self.api.url_for(worker_name)
            pool.workers.append(Worker(worker_name, env, tuple(roles), self.work_dir / "logs"))
        self.pools.append(pool)
        return pool
