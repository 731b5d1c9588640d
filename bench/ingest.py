"""Ingest benchmark: N domain events over T tenants through one ingest worker (debounce on, jobs
emitted), against raw aiokafka consumption of the same records. Prints one JSON line.

The mix is a busy game-and-billing day: 40% world-time-advanced (four job types each: leading and
trailing windows), 30% entity-modified, 25% invoice-due, 5% export-requested (a job each). The
events are on the broker before the worker starts, so the figure is the worker's own sustained
rate, not the publisher's.

    python bench/ingest.py [--events 200000] [--tenants 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import tempfile
import time
import uuid
from datetime import UTC, date, datetime
from pathlib import Path

from cronbus.clients.devstack.harness import DevStack, WorkerProcess
from cronbus.clients.kafka import connect
from cronbus.streams import topics
from cronbus.streams.events import (
    DomainEvent,
    EntityModified,
    ExportRequested,
    InvoiceDue,
    WorldTimeAdvanced,
    encode_event,
    topic_of,
)
from cronbus.streams.keys import tenant_key
from cronbus.streams.settings import Settings, load_settings

# the four event topics of cronbus's own families the benchmark's mix publishes to
EVENT_TOPICS = (topics.WORLD_TIME_ADVANCED, topics.ENTITY_MODIFIED, topics.INVOICE_DUE,
                topics.EXPORT_REQUESTED)

RECEIVED = re.compile(r'^cronbus_events_received_total\{topic="[^"]+"\} (\S+)$', re.M)


def event_for(n: int, tenants: int, now: datetime) -> DomainEvent:
    tenant, kind = f"tenant-{n % tenants}", n % 20
    common = {"event_id": f"e{n}", "tenant_id": tenant, "occurred_at": now}
    if kind < 8:
        return WorldTimeAdvanced(**common, world_time=now)
    if kind < 14:
        return EntityModified(**common, entity_type=("settlement", "structure")[n % 2],
                              entity_id=f"ent-{n % 97}")
    if kind < 19:
        return InvoiceDue(**common, invoice_id=f"INV-{n}", due_date=date(2026, 12, 1), amount=1)
    return ExportRequested(**common, export_id=f"x{n}")


async def publish(brokers: connect.Brokers, events: int, tenants: int) -> float:
    producer = connect.producer(brokers, linger_ms=20, acks=1, max_batch_size=256_000)
    await producer.start()
    started = time.perf_counter()
    try:
        now = datetime.now(UTC)
        for n in range(events):
            event = event_for(n, tenants, now)
            await producer.send(topic_of(event), key=tenant_key(event.tenant_id),
                                value=encode_event(event))
        await producer.flush()
    finally:
        await producer.stop()
    return events / (time.perf_counter() - started)


async def raw_consume(brokers: connect.Brokers, events: int) -> float:
    consumer = connect.reader(brokers, *EVENT_TOPICS)
    await consumer.start()
    seen, started = 0, time.perf_counter()
    try:
        while seen < events:
            batch = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            seen += sum(len(records) for records in batch.values())
    finally:
        await consumer.stop()
    return events / (time.perf_counter() - started)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (from /proc, in clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def received(worker: WorkerProcess) -> int:
    return sum(int(float(value)) for value in RECEIVED.findall(worker.metrics_text()))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--tenants", type=int, default=1000)
    args = parser.parse_args()
    log_dir = Path(tempfile.mkdtemp(prefix="cronbus-bench-"))
    with DevStack(log_dir, with_api=False) as stack:
        env = {**stack.env(), Settings.env_name("app_id"): f"bench-{uuid.uuid4().hex[:6]}",
               Settings.env_name("data_dir"): str(log_dir / "data"),
               Settings.env_name("log_level"): "WARNING"}
        brokers = load_settings(broker_url=stack.broker_url).kafka  # CRONBUS_KAFKA_* too
        publish_rate = asyncio.run(publish(brokers, args.events, args.tenants))
        worker = WorkerProcess("worker", env, log_dir, roles=("ingest",)).start()
        try:
            # the backlog is on the broker: time the worker from its first sample with events in
            assert worker.process.proc is not None
            pid = worker.process.proc.pid
            baseline = received(worker)
            started, cpu_started = time.perf_counter(), cpu_seconds(pid)
            last, last_change, cpu_last = baseline, time.perf_counter(), cpu_started
            while last < args.events:
                time.sleep(0.2)
                now = received(worker)
                if now != last:
                    last, last_change, cpu_last = now, time.perf_counter(), cpu_seconds(pid)
                elif time.perf_counter() - last_change > 30:
                    sys.exit(f"the worker stalled at {last} of {args.events} events")
            ingest_rate = (args.events - baseline) / (last_change - started)
            # the same work per CPU second: what the worker would do with a core to itself
            cpu_rate = (args.events - baseline) / (cpu_last - cpu_started)
        finally:
            worker.stop()
        raw_rate = asyncio.run(raw_consume(brokers, args.events))
    print(json.dumps({
        "bench": "ingest", "events": args.events, "tenants": args.tenants,
        "worker_events_per_s": round(ingest_rate), "worker_events_per_cpu_s": round(cpu_rate),
        "raw_aiokafka_events_per_s": round(raw_rate),
        "ratio_to_raw": round(ingest_rate / raw_rate, 4), "publish_events_per_s": round(publish_rate),
        "target_events_per_s": 20_000,
    }))


if __name__ == "__main__":
    main()
