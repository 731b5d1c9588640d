"""No record can block a partition: every kind of record anyone can produce (a tombstone, a null
key or value, empty bytes, 5 MB, invalid UTF-8 and duplicate or huge headers, JSON nested 10,000
deep, a 5,000-digit number) goes, with confluent-kafka (a client cronbus does not use), onto
every topic cronbus reads, between valid records. Every valid record does its work downstream
exactly once; every bad one is accounted for (kept in events.invalid, dead-lettered, or ignored
and counted on the compacted schedules topic); the worker's log names each bad record once."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import httpx
import redis.asyncio as aioredis
from confluent_kafka import Producer

from cronbus.agents.ingest.service import immediate_job
from cronbus.clients.redis.job_status import JobStatusStore
from cronbus.streams import headers, topics
from cronbus.streams.events import (
    CronTick,
    DomainEvent,
    EntityModified,
    ExportRequested,
    InvoiceDue,
    WorldTimeAdvanced,
    encode_event,
)
from cronbus.streams.jobs import Job, JobState, job_id_for
from cronbus.streams.keys import partition_of, tenant_key
from cronbus.streams.schedules import Schedule
from tests.integration.kafka import eventually, read_topic
from tests.seeds import SEEDS

TENANT = "acme"
KEY = tenant_key(TENANT)
PARTITIONS = 4  # as the tests' settings say
JOB_TOPIC = topics.job_topic("export")
DEAD = topics.dead_letter_topic(JOB_TOPIC)
HUGE = b"x" * 5_000_000

Headers = list[tuple[str, bytes]]
# what anyone can put on a topic: (name, key, value, headers)
POISON: list[tuple[str, bytes | None, bytes | None, Headers]] = [
    ("tombstone", None, None, []),
    ("null key", None, b"{}", []),
    ("null value", KEY, None, []),
    ("empty bytes", b"", b"", []),
    ("5 MB value", KEY, HUGE, []),
    ("invalid UTF-8", KEY, b"\xff\xfe{", [("trace", b"\xff\xfe\xfd")]),
    ("duplicate headers", KEY, b"{", [("dup", b"1"), ("dup", b"2")]),
    ("huge headers", KEY, b"{", [(f"h{n}", b"y" * 4096) for n in range(256)]),
    ("nested 10,000 deep", KEY, b"[" * 10_000 + b"]" * 10_000, []),
    ("5,000-digit number", KEY, b'{"tenant_id": ' + b"9" * 5000 + b"}", []),
]
IMMEDIATE = ",".join(f"{t}=immediate" for t in SEEDS.names)  # one job per event: ids known


def now() -> datetime:
    return datetime.now(UTC)


def valid_events(n: int) -> list[tuple[str, DomainEvent]]:
    """One valid event for every ingested topic, all of tenant acme."""
    at = now()
    return [
        (topics.WORLD_TIME_ADVANCED, WorldTimeAdvanced(
            event_id=f"w{n}", tenant_id=TENANT, occurred_at=at, world_time=at)),
        (topics.ENTITY_MODIFIED, EntityModified(
            event_id=f"m{n}", tenant_id=TENANT, occurred_at=at, entity_type="settlement",
            entity_id=f"s{n}")),
        (topics.INVOICE_DUE, InvoiceDue(
            event_id=f"i{n}", tenant_id=TENANT, occurred_at=at, invoice_id=f"INV-{n}",
            due_date=at.date(), amount=1)),
        (topics.EXPORT_REQUESTED, ExportRequested(
            event_id=f"e{n}", tenant_id=TENANT, occurred_at=at, export_id=f"EXP-{n}")),
        (topics.CRON_TICKS, CronTick(
            event_id=f"tick-{n}", tenant_id=TENANT, occurred_at=at, schedule_id=f"sched-{n}",
            job_type="export", fire_at=at)),
    ]


def job_ids_of(events: list[tuple[str, DomainEvent]], *, handled: bool) -> set[str]:
    """The jobs the events become: those of one call (``handled`` False: the development API
    sees them) or those run by a handler (against the world API: their status says done)."""
    return {immediate_job(event, job_type, 0).job_id
            for topic, event in events for job_type in SEEDS.route(topic, event)
            if (SEEDS[job_type].handler is not None) == handled}


async def completed(settings, job_ids: set[str]) -> set[str]:
    client = aioredis.Redis.from_url(settings.redis_url)
    try:
        store = JobStatusStore(client, namespace=settings.redis_namespace, ttl_s=60)
        return {job_id for job_id in job_ids
                if ((await store.get(job_id)) or {}).get("state") == JobState.COMPLETED}
    finally:
        await client.aclose()


def export_job(name: str) -> Job:
    return Job(job_id=job_id_for(TENANT, "export", f"poison-test:{name}"), tenant_id=TENANT,
               type="export", triggered_by="manual", scheduled_at=now(),
               payload={"export_id": name})


class Sender:
    """confluent-kafka's producer, remembering where each record landed."""

    def __init__(self, brokers: list[str]) -> None:
        self.producer = Producer({"bootstrap.servers": ",".join(brokers),
                                  "partitioner": "murmur2_random",
                                  "message.max.bytes": 20_000_000})
        self.landed: list[tuple[str, str, int, int]] = []  # (what, topic, partition, offset)

    def send(self, what: str, topic: str, key: bytes | None, value: bytes | None,
             record_headers: Headers | None = None, *, partition: int | None = None) -> None:
        def delivered(error, message) -> None:
            assert error is None, f"{what} on {topic} was not delivered: {error}"
            self.landed.append((what, message.topic(), message.partition(), message.offset()))

        extra = {} if partition is None else {"partition": partition}
        self.producer.produce(topic, key=key, value=value, headers=record_headers or None,
                              on_delivery=delivered, **extra)
        self.producer.poll(0)

    def flush(self) -> None:
        assert self.producer.flush(60) == 0, "records not delivered"

    def positions(self, topic_names: set[str], *, bad: bool = True) -> set[tuple[str, int, int]]:
        """Where the bad records (or the valid ones) on these topics landed."""
        return {(topic, partition, offset) for what, topic, partition, offset in self.landed
                if topic in topic_names and (what != "valid") == bad}


def source_of(record) -> tuple[str, int, int]:
    found = headers.decode(record.headers)
    return (found[headers.SOURCE_TOPIC], int(found[headers.SOURCE_PARTITION]),
            int(found[headers.SOURCE_OFFSET]))


async def test_no_record_on_any_topic_blocks_a_partition_and_every_one_is_accounted_for(
    settings, start_worker, api
):
    worker = start_worker(roles=("ingest", "processor", "ticker"),
                          debounce_policies=IMMEDIATE, retry_after_max_s="3")
    sender = Sender(settings.broker_url)
    acme = partition_of(KEY, PARTITIONS)
    retry_topic = topics.retry_topic(JOB_TOPIC, settings.retry_backoff_s)
    ingested = set(SEEDS.event_topics)
    schedule = Schedule(id="after-poison", tenant_id=TENANT, name="fires after poison",
                        job_type="export", every_ms=1000, revision_at=now())

    # every kind of record on every topic cronbus reads, each followed by valid work
    events: list[tuple[str, DomainEvent]] = []
    for round_, (what, key, value, record_headers) in enumerate(POISON):
        for topic in (*ingested, topics.SCHEDULES, JOB_TOPIC, retry_topic):
            on = acme if key is None else None  # null keys too on acme's partition
            sender.send(what, topic, key, value, record_headers, partition=on)
        for topic, event in valid_events(round_):
            events.append((topic, event))
            sender.send("valid", topic, KEY, encode_event(event))
        job = export_job(f"after-{round_}")
        sender.send("valid", JOB_TOPIC, KEY, job.encode())
    sender.send("valid", topics.SCHEDULES, schedule.key, schedule.encode())
    # retry records whose story is wrong: one capped and run, two dead-lettered by name
    far, bad_attempts, bad_due = (export_job(n) for n in ("far", "attempts-abc", "retry-at-soon"))
    sender.send("valid", retry_topic, KEY, far.encode(),
                [(headers.ATTEMPTS, b"1"), (headers.RETRY_AT, b"1e12")])
    sender.send("bad story", retry_topic, KEY, bad_attempts.encode(), [(headers.ATTEMPTS, b"abc")])
    sender.send("bad story", retry_topic, KEY, bad_due.encode(), [(headers.RETRY_AT, b"soon")])
    sender.flush()

    # every valid record does its work, exactly once
    handled = job_ids_of(events, handled=True)
    expected = job_ids_of(events, handled=False) | {
        export_job(f"after-{n}").job_id for n in range(len(POISON))}
    expected.add(far.job_id)
    applied = await eventually(api.applied, lambda got: expected <= set(got), timeout_s=90,
                               what="every valid event, tick and job applied downstream")
    assert {job_id: applied[job_id] for job_id in expected} == dict.fromkeys(expected, 1)
    # a handler job's status is written after its effects (status writes are batched)
    assert handled
    await eventually(lambda: completed(settings, handled), lambda done: done == handled,
                     timeout_s=60, what="every handler job completed")
    ticks = await read_topic(settings.broker_url, topics.CRON_TICKS, idle_s=1)
    fired = [json.loads(r.value) for r in ticks if r.value and b"after-poison" in r.value]
    assert fired, "the schedule written after the poison records fires"

    # every bad record on an ingested topic is in events.invalid, once, with its reason
    kept = await read_topic(settings.broker_url, topics.EVENTS_INVALID, idle_s=2, timeout_s=60)
    kept_from = Counter(source_of(r) for r in kept)
    assert set(kept_from) == sender.positions(ingested)
    assert set(kept_from.values()) == {1}
    by_source = {source_of(r): r for r in kept}
    for what, topic, partition, offset in sender.landed:
        if topic not in ingested or what == "valid":
            continue
        found = headers.decode(by_source[topic, partition, offset].headers)
        if what in ("tombstone", "null value"):
            assert found[headers.NULL_VALUE] == "true"
        if what == "5 MB value":
            assert found[headers.REASON] == "oversize"
            assert found[headers.ORIGINAL_SIZE] == str(len(HUGE))
            assert found[headers.ORIGINAL_SHA256] == hashlib.sha256(HUGE).hexdigest()

    # every bad record on the job and retry topics is dead-lettered, once, with its reason
    letters = await read_topic(settings.broker_url, DEAD, idle_s=2, timeout_s=60)
    lettered = Counter(source_of(r) for r in letters)
    assert set(lettered) == sender.positions({JOB_TOPIC, retry_topic})
    assert set(lettered.values()) == {1}
    errors = {headers.decode(r.headers)[headers.ERROR] for r in letters}
    assert any("cronbus-attempts is 'abc'" in e for e in errors)
    assert any("cronbus-retry-at is 'soon'" in e for e in errors)

    # on the compacted schedules topic, a bad record is ignored and counted (a tombstone for a
    # key never written removes nothing); none was dropped anywhere
    metrics = worker.metrics_text()
    schedule_invalid = sum(
        float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
        if line.startswith("cronbus_events_invalid_total{") and 'topic="schedules"' in line)
    assert schedule_invalid == len(POISON) - 1
    dropped = [line for line in metrics.splitlines()
               if line.startswith("cronbus_records_dropped_total{") and not line.endswith(" 0.0")]
    assert dropped == []

    # a tombstone then a valid event on the same partition, now: the event is not held back
    late = ExportRequested(event_id="late", tenant_id=TENANT, occurred_at=now(), export_id="late")
    started = time.monotonic()
    sender.send("tombstone", topics.EXPORT_REQUESTED, None, None, partition=acme)
    sender.send("valid", topics.EXPORT_REQUESTED, KEY, encode_event(late))
    sender.flush()
    late_job = immediate_job(late, "export", 0).job_id
    await eventually(api.applied, lambda got: late_job in got, timeout_s=10, interval_s=0.1,
                     what="the event after a tombstone applied")
    assert time.monotonic() - started < 5

    # healthy, and the log names each bad record once
    health = httpx.get(f"{worker.base_url}/health", timeout=10).json()
    assert health["components"]["progress"]["status"] == "up", health
    await asyncio.sleep(1)
    log = worker.process.log_path.read_text(errors="replace")
    for topic, partition, offset in sender.positions({*ingested, topics.SCHEDULES, JOB_TOPIC,
                                                      retry_topic}):
        named = log.count(f"{topic}[{partition}]@{offset}:") + log.count(
            f"{topic}[{partition}]@{offset} ")
        assert named <= 1, f"{topic}[{partition}]@{offset} is in the log {named} times"
    assert len(log.splitlines()) < 400, "the log stays bounded"
    assert fired[0]["fire_at"] > (now() - timedelta(minutes=5)).isoformat()
