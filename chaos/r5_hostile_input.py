"""R5 hostile input: fuzzed records, sent by a client cronbus does not use (confluent-kafka), on
every topic cronbus reads: the event topics and cron ticks (ingest), the schedules topic (the
ticker), a job topic and its retry topic (a processor).

The fuzz is seeded (``seed`` in the result, so a run can be repeated): random bytes, truncated
JSON, JSON nested 50,000 deep, a few 10 MB values, wrong types, NUL and invalid UTF-8, absurd
headers (hundreds, large, binary), null values, and keys that disagree with the record's tenant
on valid jobs and events. One record in ten is valid work.

Every record sent is accounted for, from what is on the broker and at the API afterwards:
``processed`` (a valid job or event: applied at the development API, by its job id),
``invalid`` (in ``events.invalid``, found by its source topic, partition and offset, with a
reason), ``dead_lettered`` (on the job's dead-letter topic, by source position, with an error
type) or, on the compacted schedules topic, ``ignored_counted`` (counted in
``cronbus_events_invalid_total{topic="schedules"}``; a tombstone is a removal). A record the
broker refused (a 10 MB value over its limit) is ``refused_by_broker``, said apart. ``lost`` is
what is none of these. The worker must not exit, and its memory stays bounded.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException, Producer

from chaos import faults
from cronbus.agents.ingest.service import immediate_job
from cronbus.streams import headers, topics
from cronbus.streams.events import ExportRequested, encode_event
from cronbus.streams.jobs import Job, job_id_for

SCENARIO = "R5"
PROFILES = {"full": {"records": 10_000, "huge": 5}, "ci": {"records": 2_000, "huge": 2}}
EVENT_TOPICS = (topics.WORLD_TIME_ADVANCED, topics.ENTITY_MODIFIED, topics.INVOICE_DUE,
                topics.EXPORT_REQUESTED, topics.PAYMENT_WEBHOOK_RECEIVED, topics.CRON_TICKS)
JOB_TOPIC = topics.job_topic(faults.JOB_TYPE)
RETRY_TOPIC = topics.retry_topic(JOB_TOPIC, 1.0)
DEAD_TOPIC = topics.dead_letter_topic(JOB_TOPIC)
ALL_TOPICS = (*EVENT_TOPICS, topics.SCHEDULES, JOB_TOPIC, RETRY_TOPIC)
HUGE_BYTES = 10 * 1024 * 1024
MAX_RSS_MB = 1024.0  # bounded: a worker of about 100 MB must not grow with what it is sent

Headers = list[tuple[str, bytes]]


class Fuzz:
    """Hostile records of every kind, from one seed."""

    def __init__(self, seed: int, run_id: str) -> None:
        self.rng = random.Random(seed)
        self.run_id = run_id
        self.count = 0
        self.last_job_id: str | None = None

    def _bytes(self, n: int) -> bytes:
        return self.rng.randbytes(n)

    def job(self, tenant: str) -> Job:
        self.count += 1
        return Job(job_id=job_id_for(tenant, faults.JOB_TYPE, f"r5:{self.run_id}:{self.count}"),
                   tenant_id=tenant, type=faults.JOB_TYPE, triggered_by="event",
                   scheduled_at=datetime.now(UTC), payload={"n": self.count})

    def event(self, tenant: str) -> ExportRequested:
        self.count += 1
        return ExportRequested(event_id=f"r5-{self.run_id}-{self.count}", tenant_id=tenant,
                               occurred_at=datetime.now(UTC), export_id=f"x{self.count}")

    def bad_value(self, kind: str) -> tuple[bytes | None, Headers, str | None]:
        """A hostile value and headers; the job id when the value is still a whole job (absurd
        headers around a valid job: the job may run, or be dead-lettered for its headers)."""
        value, record_headers = self._bad_value(kind)
        return value, record_headers, self.last_job_id if kind == "absurd headers" else None

    def _bad_value(self, kind: str) -> tuple[bytes | None, Headers]:
        rng = self.rng
        job = self.job("t1")
        self.last_job_id = job.job_id
        whole = job.encode()
        match kind:
            case "random bytes":
                return self._bytes(rng.randint(1, 4096)), []
            case "truncated json":
                return whole[:rng.randint(1, len(whole) - 1)], []
            case "deeply nested":
                depth = rng.choice((1_000, 10_000, 50_000))
                opener, closer = rng.choice(((b"[", b"]"), (b'{"a":', b"}")))
                return opener * depth + b"1" + closer * depth, []
            case "wrong types":
                return json.dumps({"job_id": rng.randint(0, 10**9), "tenant_id": [1, 2],
                                   "type": {"x": None}, "scheduled_at": True,
                                   "payload": "not an object", "event_id": 3.5,
                                   "world_time": [], "every_ms": "soon"}).encode(), []
            case "nul and invalid utf-8":
                return rng.choice((b'{"tenant_id": "a\x00b", "event_id": "\x00"}',
                                   b"\xff\xfe\xfd{\xc3\x28}", whole.replace(b'"', b"\xc0", 3),
                                   b'{"tenant_id": "\xed\xa0\x80"}')), []
            case "absurd headers":
                many = [(f"h{n}", self._bytes(rng.randint(0, 2048)))
                        for n in range(rng.randint(100, 400))]
                many += [("cronbus-attempts", b"-1e308"), ("cronbus-retry-at", b"nan"),
                         ("\u202e\x00name", b"\xff" * 10)]
                return whole, many
            case "null value":
                return None, []
            case "empty":
                return b"", []
            case "big number":
                return b'{"tenant_id": ' + b"9" * 5000 + b"}", []
            case "huge":
                return b"{" + b"x" * (HUGE_BYTES - 1), []
        raise ValueError(f"no fuzz kind {kind!r}")

    def key(self) -> bytes | None:
        return self.rng.choice((b"t1", None, b"", self._bytes(16), b"x" * 5000))


BAD_KINDS = ("random bytes", "truncated json", "deeply nested", "wrong types",
             "nul and invalid utf-8", "absurd headers", "null value", "empty", "big number")


class Sender:
    """confluent-kafka's producer, remembering where each record landed (or why not)."""

    def __init__(self, bootstrap: str) -> None:
        self.producer = Producer({"bootstrap.servers": bootstrap,
                                  "partitioner": "murmur2_random",
                                  "message.max.bytes": 20_000_000,
                                  "queue.buffering.max.kbytes": 1_000_000})
        # (kind, topic, partition, offset, job id expected applied or None)
        self.landed: list[tuple[str, str, int, int, str | None]] = []
        self.refused: Counter[str] = Counter()  # kind -> records the broker would not take

    def send(self, kind: str, topic: str, key: bytes | None, value: bytes | None,
             record_headers: Headers, job_id: str | None = None) -> None:
        def delivered(error: Any, message: Any) -> None:
            if error is not None:
                self.refused[f"{kind}: {error.str()}"[:120]] += 1
                return
            self.landed.append((kind, message.topic(), message.partition(), message.offset(),
                                job_id))

        while True:
            try:
                self.producer.produce(topic, key=key, value=value,
                                      headers=record_headers or None, on_delivery=delivered)
                break
            except BufferError:  # its queue is full: let it deliver some first
                self.producer.poll(0.5)
            except KafkaException as exc:  # refused before sending (e.g. too large here)
                self.refused[f"{kind}: {exc}"[:120]] += 1
                break
        self.producer.poll(0)

    def flush(self) -> None:
        left = self.producer.flush(120)
        if left:
            raise faults.ScenarioFailed(f"{left} fuzzed records still undelivered after 120 s")


def run(profile: str, work_dir: Path) -> dict[str, Any]:
    figures = PROFILES[profile]
    started = time.monotonic()
    run_id = uuid.uuid4().hex[:6]
    seed = random.SystemRandom().randrange(2**31)
    fuzz = Fuzz(seed, run_id)
    stack = faults.lean_stack(work_dir)
    worker = None
    try:
        stack.start()
        assert stack.api is not None
        api_control = stack.api.control_url
        env = faults.worker_env(stack, work_dir, job_types=f"{faults.JOB_TYPE},export",
                                retry_after_max_s="3", log_level="INFO")
        worker = faults.start_worker("worker", env, work_dir,
                                     roles=("ingest", "processor", "ticker"))
        sender = Sender(stack.broker_url.removeprefix("kafka://"))
        sent_started = time.monotonic()
        rss_samples = [faults.rss_mb(worker.process.pid)]
        huge_left = figures["huge"]
        for n in range(figures["records"]):
            topic = ALL_TOPICS[n % len(ALL_TOPICS)]
            if n % 10 == 9:  # valid work, some of it mis-keyed
                key_of = fuzz.rng.choice((None, b"someone-else"))
                if topic in EVENT_TOPICS:
                    event = fuzz.event(f"t{n % 7}")
                    job_id = immediate_job(event, "export", 0).job_id
                    sender.send("valid event", topics.EXPORT_REQUESTED,
                                key_of or event.tenant_id.encode(), encode_event(event), [],
                                job_id)
                else:
                    job = fuzz.job(f"t{n % 7}")
                    sender.send("valid job", fuzz.rng.choice((JOB_TOPIC, RETRY_TOPIC)),
                                key_of or job.tenant_id.encode(), job.encode(), [], job.job_id)
                continue
            kind = fuzz.rng.choice(BAD_KINDS)
            if huge_left and n % (figures["records"] // (figures["huge"] + 1)) == 0 and n:
                kind, huge_left = "huge", huge_left - 1
            value, record_headers, maybe_job = fuzz.bad_value(kind)
            key = fuzz.key()
            if topic == topics.SCHEDULES and value is None and key is None:
                key = b"no-such-schedule"  # a tombstone without a key is refused by clients
            sender.send(kind, topic, key, value, record_headers,
                        maybe_job if topic in (JOB_TOPIC, RETRY_TOPIC) else None)
            if n % 500 == 0:
                rss_samples.append(faults.rss_mb(worker.process.pid))
        sender.flush()
        send_s = time.monotonic() - sent_started
        landed = sender.landed

        brokers = faults.brokers_of(stack)
        positions = {(t, p, o): (kind, job_id) for kind, t, p, o, job_id in landed}
        expected_jobs = {job_id for kind, *_, job_id in landed
                         if job_id and kind.startswith("valid")}
        maybe_jobs = {job_id for *_, job_id in landed if job_id}
        on_schedules = [x for x in landed if x[1] == topics.SCHEDULES]
        schedule_removals = sum(1 for x in on_schedules if x[0] == "null value")
        schedule_invalid_expected = len(on_schedules) - schedule_removals

        def schedules_counted() -> float:
            text = worker.metrics_text()
            return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                       if line.startswith("cronbus_events_invalid_total{")
                       and 'topic="schedules"' in line)

        def account() -> dict[str, Any]:
            found = asyncio.run(faults.read_all(brokers, [topics.EVENTS_INVALID, DEAD_TOPIC],
                                                idle_s=1.5, timeout_s=180))
            outcome: dict[tuple[str, int, int], str] = {}
            reasons: Counter[str] = Counter()
            kept_twice = 0
            for topic_name, label, reason_header in (
                    (topics.EVENTS_INVALID, "invalid", headers.REASON),
                    (DEAD_TOPIC, "dead_lettered", headers.ERROR_TYPE)):
                for record in found[topic_name]:
                    story = headers.decode(record.headers)
                    try:
                        source = (story[headers.SOURCE_TOPIC], int(story[headers.SOURCE_PARTITION]),
                                  int(story[headers.SOURCE_OFFSET]))
                    except (KeyError, ValueError):
                        continue  # not one of ours (a record the worker kept for its own reason)
                    if source in outcome:
                        kept_twice += 1
                    if story.get(reason_header):
                        outcome[source] = label
                        reasons[f"{label}:{story[reason_header]}"] += 1
            applied = faults.applied_keys(api_control)
            counts: Counter[str] = Counter()
            unaccounted: list[tuple[str, int, int]] = []
            valid_processed = 0
            for position, (_kind, job_id) in positions.items():
                if position in outcome:
                    counts[outcome[position]] += 1
                elif job_id is not None and applied.get(job_id, 0) >= 1:
                    counts["processed"] += 1
                    valid_processed += job_id in expected_jobs
                elif position[0] == topics.SCHEDULES:
                    counts["schedules"] += 1
                else:
                    unaccounted.append(position)
            return {"counts": counts, "unaccounted": unaccounted, "reasons": reasons,
                    "kept_twice": kept_twice, "valid_processed": valid_processed,
                    "unaccounted_by": Counter(f"{positions[p][0]} on {p[0]}"
                                              for p in unaccounted).most_common(10),
                    "doubled": sum(1 for j in maybe_jobs if applied.get(j, 0) > 1)}

        def settled(state: dict[str, Any]) -> bool:
            rss_samples.append(faults.rss_mb(worker.process.pid))
            return not state["unaccounted"] and schedules_counted() >= schedule_invalid_expected

        state = faults.wait_or_last(account, settled, timeout_s=420, interval_s=3,
                                    what="every fuzzed record accounted for")
        counted_on_schedules = schedules_counted()
        rss_samples.append(faults.rss_mb(worker.process.pid))
        dropped = sum(float(line.rsplit(" ", 1)[1]) for line in worker.metrics_text().splitlines()
                      if line.startswith("cronbus_records_dropped_total{"))
        log = faults.log_facts(worker.process.log_path)
        alive = worker.process.alive()
        counts = state["counts"]
        schedules_ok = counted_on_schedules == schedule_invalid_expected
        accounted = (counts["processed"] + counts["invalid"] + counts["dead_lettered"]
                     + (counts["schedules"] if schedules_ok else 0))
        sent = len(landed) + sum(sender.refused.values())
        refused = sum(sender.refused.values())
        result: dict[str, Any] = {
            "scenario": SCENARIO, "profile": profile, "seed": seed,
            "sent": sent, "landed": len(landed), "refused_by_broker": refused,
            "refused_detail": dict(sender.refused),
            "applied": counts["processed"], "valid_sent": len(expected_jobs),
            "valid_applied": state["valid_processed"],
            "invalid": counts["invalid"], "dead_lettered": counts["dead_lettered"],
            "ignored_counted": {"schedules_records": len(on_schedules),
                                "removals": schedule_removals,
                                "counted_invalid": counted_on_schedules},
            "lost": len(landed) - accounted, "doubled": state["doubled"],
            "kept_twice": state["kept_twice"], "dropped": dropped,
            "unaccounted_by": state["unaccounted_by"],
            "reasons": dict(state["reasons"].most_common(12)),
            "send_s": round(send_s, 1), "peak_rss_mb": round(max(rss_samples), 1),
            "crashes": 0 if alive else 1, "log_lines": log["log_lines"],
            "log_bytes": log["log_bytes"],
        }
        result["passed"] = bool(
            alive and result["lost"] == 0 and result["doubled"] == 0 and schedules_ok
            and state["valid_processed"] == len(expected_jobs) and dropped == 0
            and result["peak_rss_mb"] <= MAX_RSS_MB)
        result["duration_s"] = round(time.monotonic() - started, 1)
        return result
    finally:
        if worker is not None:
            worker.stop()
        stack.stop()
