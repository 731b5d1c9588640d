"""``cronbus demo`` (``make run``): the dev stack, one worker, bursts of invoice-due events, and a
live view of events arriving and debounced jobs running against the development API."""

from __future__ import annotations

import asyncio
import contextlib
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

import httpx

from cronbus.clients.devstack.harness import DevStack, WorkerProcess
from cronbus.clients.kafka import connect
from cronbus.clients.kafka.publisher import EventPublisher
from cronbus.streams import topics
from cronbus.streams.events import InvoiceDue
from cronbus.streams.jobs import Job
from cronbus.streams.settings import Settings, load_settings

DEMO_WINDOW_S = "2"


def _say(kind: str, text: str) -> None:
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


async def _watch_topics(brokers: connect.Brokers) -> None:
    consumer = connect.reader(brokers, topics.INVOICE_DUE,
                              topics.job_topic("invoice-generation"), from_start=False)
    await consumer.start()
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=300)
            arrived: dict[str, int] = {}
            for record in (r for part in batch.values() for r in part):
                if record.topic == topics.INVOICE_DUE:
                    tenant = (record.key or b"?").decode()
                    arrived[tenant] = arrived.get(tenant, 0) + 1
                    continue
                job = Job.decode(record.value)
                covered = job.covers.count if job.covers else 0
                _say("job", f"{job.job_id} for {job.tenant_id}: debounced {covered} event(s)")
            if arrived:
                _say("arrived", ", ".join(f"{t}: {n}" for t, n in sorted(arrived.items())))
    finally:
        await consumer.stop()


async def _watch_api(control_url: str) -> None:
    seen = 0
    async with httpx.AsyncClient(timeout=5) as client:
        while True:
            calls = (await client.get(f"{control_url}/requests")).json()
            for call in calls[seen:]:
                verdict = "applied" if call["applied"] else "duplicate, not applied"
                _say("api", f"{call['operation']} for {call['tenant_id']} "
                            f"(Idempotency-Key {call['idempotency_key']}): {verdict}")
            seen = len(calls)
            await asyncio.sleep(0.3)


async def _live(settings: Settings, control_url: str, tenants: list[str], burst: int,
                every_s: float) -> None:
    tasks = [
        asyncio.create_task(_watch_topics(settings.kafka)),
        asyncio.create_task(_watch_api(control_url)),
        asyncio.create_task(_publish_bursts(settings.kafka, tenants, burst, every_s)),
    ]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()


def run_demo(*, tenants: int, burst: int, every_s: float) -> int:
    log_dir = Path(tempfile.mkdtemp(prefix="cronbus-demo-"))
    stack = DevStack(log_dir)
    worker: WorkerProcess | None = None
    # Ctrl-C and SIGTERM both end the demo through KeyboardInterrupt, so cleanup runs once
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        print(f"cronbus demo: starting the broker, Redis and the development API (logs: {log_dir})")
        stack.start()
        env = {
            **stack.env(),
            Settings.env_name("app_id"): f"demo-{uuid.uuid4().hex[:6]}",
            Settings.env_name("debounce_window_s"): DEMO_WINDOW_S,
            Settings.env_name("data_dir"): str(log_dir / "data"),
        }
        os.environ.update(env)
        settings = load_settings()
        print("cronbus demo: starting a worker (about 10 s)")
        worker = WorkerProcess("worker", env, log_dir).start()
        assert stack.api is not None
        print(f"cronbus demo: ready. Debounce window {DEMO_WINDOW_S}s, metrics at "
              f"{worker.base_url}/metrics. Ctrl-C stops everything.\n")
        asyncio.run(_live(settings, stack.api.control_url,
                          [f"tenant-{chr(97 + n)}" for n in range(tenants)], burst, every_s))
    except KeyboardInterrupt:
        print("\ncronbus demo: stopping")
    except Exception as exc:  # show the cause, then clean up
        print(f"cronbus demo failed: {exc}", file=sys.stderr)
        return 1
    finally:
        with contextlib.suppress(KeyboardInterrupt):
            if worker is not None:
                worker.stop()
            stack.stop()
    return 0
