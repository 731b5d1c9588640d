"""``cronbus demo`` (``make run``): the dev stack, one worker, bursts of invoice-due events, and a
live view of events arriving and debounced jobs running against the development API."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import signal
import sys
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import redis as redis_sync

from cronbus.clients.devstack.harness import DevStack, WorkerProcess
from cronbus.clients.kafka import connect
from cronbus.clients.kafka.publisher import EventPublisher
from cronbus.clients.network.reach import masked
from cronbus.streams import topics
from cronbus.streams.events import InvoiceDue
from cronbus.streams.jobs import Job
from cronbus.streams.settings import Settings, load_settings

DEMO_WINDOW_S = "2"


def _say(kind: str, text: str) -> None:
    """Every line on screen, the demo's own included, in one format: time, kind, text."""
    print(f"{time.strftime('%H:%M:%S')}  {kind:<8} {text}", flush=True)


async def _publish_bursts(brokers: connect.Brokers, tenants: list[str], burst: int, every_s: float) -> None:
    async with EventPublisher(brokers) as publisher:
        while True:
            counts = dict.fromkeys(tenants, 0)
            for _ in range(burst):
                tenant = random.choice(tenants)
                counts[tenant] += 1
                await publisher.publish(InvoiceDue(
                    event_id=str(uuid.uuid4()), tenant_id=tenant, occurred_at=datetime.now(UTC),
                    invoice_id=f"INV-{random.randint(1000, 9999)}",
                    due_date=date.today() + timedelta(days=14),
                    amount=Decimal(random.randint(100, 99_999)) / 100,
                ))
            await publisher.flush()
            spread = ", ".join(f"{t}x{n}" for t, n in counts.items() if n)
            _say("publish", f"{burst} invoice-due events: {spread}")
            await asyncio.sleep(every_s)


class Watcher:
    """Shows events arriving, the jobs they became and the API calls those jobs made, in that
    order: a call is shown only after its job (or, for a job the watcher does not follow, such
    as a built-in schedule's, after a second, labelled by its tenant)."""

    def __init__(self, brokers: connect.Brokers, control_url: str, system_tenant: str) -> None:
        self.brokers = brokers
        self.control_url = control_url
        self.system_tenant = system_tenant
        self.ready = asyncio.Event()  # set once the watcher reads from the end: publish then
        self._jobs_shown: set[str] = set()
        self._waiting: list[tuple[float, dict[str, Any]]] = []

    async def run(self) -> None:
        consumer = connect.reader(self.brokers, topics.INVOICE_DUE,
                                  topics.job_topic("invoice-generation"), from_start=False)
        await consumer.start()
        try:
            while not consumer.assignment():
                await asyncio.sleep(0.05)
            for tp in consumer.assignment():  # a position now, so no event of a burst is missed
                await consumer.position(tp)
            self.ready.set()
            async with httpx.AsyncClient(timeout=5) as api:
                seen = 0
                while True:
                    self._show_records(await consumer.getmany(timeout_ms=300))
                    calls = (await api.get(f"{self.control_url}/requests")).json()
                    self._waiting += [(time.monotonic(), call) for call in calls[seen:]]
                    seen = len(calls)
                    self._show_calls()
        finally:
            await consumer.stop()

    def _show_records(self, batch: dict[Any, list[Any]]) -> None:
        arrived: dict[str, int] = {}
        jobs = []
        for record in (r for part in batch.values() for r in part):
            if record.topic == topics.INVOICE_DUE:
                tenant = (record.key or b"?").decode()
                arrived[tenant] = arrived.get(tenant, 0) + 1
            else:
                jobs.append(Job.decode(record.value))
        if arrived:
            _say("arrived", ", ".join(f"{t}: {n}" for t, n in sorted(arrived.items())))
        for job in jobs:
            covered = job.covers.count if job.covers else 0
            _say("job", f"{job.job_id} for {job.tenant_id}: debounced {covered} event(s)")
            self._jobs_shown.add(job.job_id)

    def _show_calls(self) -> None:
        now, still = time.monotonic(), []
        for seen_at, call in self._waiting:
            job_id = call["idempotency_key"].split(":", 1)[0]
            if job_id in self._jobs_shown or now - seen_at > 1.0:
                verdict = "applied" if call["applied"] else "duplicate, not applied"
                whose = ("a built-in schedule's run" if call["tenant_id"] == self.system_tenant
                         else call["tenant_id"])
                _say("api", f"{call['operation']} for {whose} "
                            f"(Idempotency-Key {call['idempotency_key']}): {verdict}")
            else:
                still.append((seen_at, call))
        self._waiting = still


async def _live(settings: Settings, control_url: str, tenants: list[str], burst: int,
                every_s: float) -> None:
    watcher = Watcher(settings.kafka, control_url, settings.system_tenant)
    tasks = [asyncio.create_task(watcher.run())]
    try:
        await asyncio.wait_for(watcher.ready.wait(), 30)
        tasks.append(asyncio.create_task(
            _publish_bursts(settings.kafka, tenants, burst, every_s)))
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()


# what the demo leaves in Redis expires this long after it stops
LEFT_KEYS_TTL_S = 3600


def expire_left_keys(redis_url: str, namespace: str) -> int:
    """Make every key of a run's own namespace expire within LEFT_KEYS_TTL_S: one that would
    live for ever, or longer (a job status keeps 7 days), gets that expiry; their count."""
    client = redis_sync.Redis.from_url(redis_url, socket_timeout=5)
    try:
        left = 0
        for key in client.scan_iter(match=f"{namespace}:*", count=1000):
            left += 1
            ttl = client.ttl(key)
            if ttl == -1 or ttl > LEFT_KEYS_TTL_S:
                client.expire(key, LEFT_KEYS_TTL_S)
        return left
    finally:
        client.close()


def run_demo(*, tenants: int, burst: int, every_s: float) -> int:
    log_dir = Path(tempfile.mkdtemp(prefix="cronbus-demo-"))
    stack = DevStack(log_dir)
    worker: WorkerProcess | None = None
    run = uuid.uuid4().hex[:6]
    namespace = f"cronbus-demo-{run}"
    # the screen is the demo's lines only, in one format: the harness says nothing but warnings
    logging.getLogger("cronbus.clients.devstack").setLevel(logging.WARNING)
    # Ctrl-C and SIGTERM both end the demo through KeyboardInterrupt, so cleanup runs once
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        _say("demo", f"starting the broker, Redis and the development API (logs: {log_dir})")
        stack.start()
        _say("demo", f"broker {stack.broker_url}, development API "
                     f"{stack.api.url if stack.api else '-'}")
        env = {
            **stack.env(),
            Settings.env_name("app_id"): f"demo-{run}",
            Settings.env_name("redis_namespace"): namespace,
            Settings.env_name("debounce_window_s"): DEMO_WINDOW_S,
            # the development API has no billing schema: the billing tenants' keeper stays off
            Settings.env_name("builtin_schedules_off"): "billing-schedules",
            Settings.env_name("data_dir"): str(log_dir / "data"),
        }
        os.environ.update(env)
        settings = load_settings()
        _say("demo", f"Redis: {masked(stack.redis.url)}, keys under {namespace}:* (they expire "
                     f"{LEFT_KEYS_TTL_S // 60} minutes after the demo stops)")
        _say("demo", "starting a worker (about 10 s)")
        worker = WorkerProcess("worker", env, log_dir).start()
        assert stack.api is not None
        _say("demo", f"ready. Debounce window {DEMO_WINDOW_S}s, metrics at "
                     f"{worker.base_url}/metrics. Ctrl-C stops everything.")
        asyncio.run(_live(settings, stack.api.control_url,
                          [f"tenant-{chr(97 + n)}" for n in range(tenants)], burst, every_s))
    except KeyboardInterrupt:
        print()
        _say("demo", "stopping")
    except Exception as exc:  # show the cause, then clean up
        print(f"cronbus demo failed: {exc}", file=sys.stderr)
        return 1
    finally:
        with contextlib.suppress(KeyboardInterrupt):
            if worker is not None:
                worker.stop()
            if stack.redis.url:
                with contextlib.suppress(Exception):
                    left = expire_left_keys(stack.redis.url, namespace)
                    _say("demo", f"{left} key(s) left under {namespace}: expire within "
                                 f"{LEFT_KEYS_TTL_S // 60} minutes")
            stack.stop()
    return 0
