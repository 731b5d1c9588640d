"""Ingest benchmark: N invoice-due events over T tenants through one ingest worker (debounce on,
jobs emitted), against raw aiokafka consumption of the same topic. Prints one JSON line.

    python bench/ingest.py [--events 200000] [--tenants 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import tempfile
import time
import uuid
from datetime import UTC, date, datetime
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from clients.harness import DevStack, WorkerProcess
from streams import topics
from streams.events import InvoiceDue, encode_event
from streams.keys import tenant_key
from streams.settings import Settings

RECEIVED = re.compile(r'^cronbus_events_received_total\{topic="invoice-due"\} (\S+)$', re.M)


async def publish(brokers: list[str], events: int, tenants: int) -> float:
    producer = AIOKafkaProducer(bootstrap_servers=brokers, linger_ms=20, max_batch_size=256_000)
    await producer.start()
    started = time.perf_counter()
    try:
        now = datetime.now(UTC)
        for n in range(events):
            tenant = f"tenant-{n % tenants}"
            event = InvoiceDue(event_id=f"e{n}", tenant_id=tenant, occurred_at=now,
                               invoice_id=f"INV-{n}", due_date=date(2026, 12, 1), amount=1)
            await producer.send(topics.INVOICE_DUE, key=tenant_key(tenant), value=encode_event(event))
        await producer.flush()
    finally:
        await producer.stop()
    return events / (time.perf_counter() - started)


async def raw_consume(brokers: list[str], events: int) -> float:
    consumer = AIOKafkaConsumer(topics.INVOICE_DUE, bootstrap_servers=brokers, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    seen, started = 0, time.perf_counter()
    try:
        while seen < events:
            batch = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            seen += sum(len(records) for records in batch.values())
    finally:
        await consumer.stop()
    return events / (time.perf_counter() - started)


def received(worker: WorkerProcess) -> int:
    match = RECEIVED.search(worker.metrics_text())
    return int(float(match.group(1))) if match else 0


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
        brokers = [stack.broker_url.removeprefix("kafka://")]
        worker = WorkerProcess("worker", env, log_dir, roles=("ingest",)).start()
        try:
            publish_rate = asyncio.run(publish(brokers, args.events, args.tenants))
            started = time.perf_counter()
            baseline = received(worker)
            last, last_change = baseline, time.perf_counter()
            while last < args.events:
                time.sleep(0.5)
                now = received(worker)
                if now != last:
                    last, last_change = now, time.perf_counter()
                elif time.perf_counter() - last_change > 30:
                    sys.exit(f"the worker stalled at {last} of {args.events} events")
            # the backlog was already on the broker: the worker's rate from the first sample
            ingest_rate = (args.events - baseline) / (last_change - started)
        finally:
            worker.stop()
        raw_rate = asyncio.run(raw_consume(brokers, args.events))
    print(json.dumps({
        "bench": "ingest", "events": args.events, "tenants": args.tenants,
        "worker_events_per_s": round(ingest_rate), "raw_aiokafka_events_per_s": round(raw_rate),
        "ratio_to_raw": round(ingest_rate / raw_rate, 4), "publish_events_per_s": round(publish_rate),
        "target_events_per_s": 20_000,
    }))


if __name__ == "__main__":
    main()
