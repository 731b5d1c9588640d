"""R4 broker restart: the broker stopped under load and started again with its data.

The broker (Tansu) stores on a local S3 server (moto), so a restart keeps its log. A worker
runs ingest and the processors; jobs and ``export-requested`` events are on the broker, the
development API answers a little slowly so a backlog is in flight, and the broker is stopped
for the outage (the workers' consumers, producers and commits all fail meanwhile), then
started again on the same port and storage. More load follows once it is back.

Asserted from outside: the worker does not exit; every job and every event's export is
applied at the development API exactly once (its own records: ``lost`` 0, ``doubled`` 0,
``repeat_calls`` counts calls the Idempotency-Key absorbed); nothing dead-lettered; the
consumer lag the worker reports goes back to zero.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from chaos import faults
from cronbus.streams import topics
from cronbus.streams.events import ExportRequested, encode_event
from cronbus.streams.keys import tenant_key

SCENARIO = "R4"
PROFILES = {
    "full": {"down_s": 30.0, "jobs_before": 4000, "jobs_after": 2000, "events": 400},
    "ci": {"down_s": 10.0, "jobs_before": 600, "jobs_after": 200, "events": 60},
}
LAG = re.compile(r'^cronbus_consumer_lag\{partition="\d+",topic="[^"]+"\} (\S+)$', re.M)


def _lag(worker: Any) -> float | None:
    try:
        return sum(float(v) for v in LAG.findall(worker.metrics_text()))
    except httpx.HTTPError:
        return None


def run(profile: str, work_dir: Path) -> dict[str, Any]:
    figures = PROFILES[profile]
    started = time.monotonic()
    run_id = uuid.uuid4().hex[:6]
    stack = faults.lean_stack(work_dir, broker_on_s3=True)
    worker = None
    try:
        stack.start()
        phases = {"stack_up": round(time.monotonic() - started, 1)}
        assert stack.api is not None and stack.broker is not None
        api_control = stack.api.control_url
        # a little slow, so jobs are in flight when the broker goes
        httpx.post(f"{api_control}/delay", json={"seconds": 0.05}, timeout=10)
        env = faults.worker_env(stack, work_dir, job_types=f"{faults.JOB_TYPE},export",
                                processor_concurrency="20",
                                # each partition is objects on S3 to create: fewer start sooner
                                partitions="2")
        worker = faults.start_worker("worker", env, work_dir, roles=("ingest", "processor"))
        brokers = faults.brokers_of(stack)
        phases["worker_ready"] = round(time.monotonic() - started, 1)

        jobs = faults.bench_jobs(run_id, figures["jobs_before"] + figures["jobs_after"])
        before, after = jobs[:figures["jobs_before"]], jobs[figures["jobs_before"]:]
        now = datetime.now(UTC)
        events = [ExportRequested(event_id=f"r4-{run_id}-{k}", tenant_id=f"ev-{k % 10}",
                                  occurred_at=now, export_id=f"x{k}")
                  for k in range(figures["events"])]
        half = len(events) // 2
        event_records = [(topics.EXPORT_REQUESTED, tenant_key(e.tenant_id), encode_event(e))
                         for e in events]
        asyncio.run(faults.produce_steadily(
            brokers, faults.job_topic_records(before) + event_records[:half], seconds=2))

        # the broker goes while the backlog is being worked off
        faults.wait_for(lambda: len(faults.applied_keys(api_control)), lambda n: n >= 100,
                        timeout_s=120, interval_s=0.2, what="the first jobs applied")
        applied_at_stop = len(faults.applied_keys(api_control))
        phases["broker_stopped"] = round(time.monotonic() - started, 1)
        stack.broker.stop()
        time.sleep(figures["down_s"])
        alive_during = worker.process.alive()
        applied_while_down = len(faults.applied_keys(api_control)) - applied_at_stop
        stack.broker.start()
        back_at = time.monotonic()
        asyncio.run(faults.produce_steadily(
            brokers, faults.job_topic_records(after) + event_records[half:], seconds=2))

        expected = {job.job_id for job in jobs}

        def progress() -> tuple[dict[str, int], set[str]]:
            return faults.applied_and_exported(api_control)

        first_new: float | None = None

        def complete(state: tuple[dict[str, int], set[str]]) -> bool:
            nonlocal first_new
            applied, exported = state
            if first_new is None and len(applied) > applied_at_stop + applied_while_down:
                first_new = time.monotonic() - back_at
            return all(k in applied for k in expected) and len(exported) >= len(events)

        applied, exported = faults.wait_or_last(progress, complete, timeout_s=300, interval_s=1,
                                                what="every job and export applied")
        all_applied_s = time.monotonic() - back_at
        phases["all_applied"] = round(time.monotonic() - started, 1)
        lag = faults.wait_or_last(lambda: _lag(worker), lambda v: v == 0, timeout_s=60,
                                  interval_s=1, what="the consumer lag back to zero")
        phases["lag_zero"] = round(time.monotonic() - started, 1)
        calls = faults.calls_per_key(api_control)
        repeat_calls = sum(n - 1 for n in calls.values() if n > 1)
        dead_lettered = faults.dead_lettered(brokers)
        # the log outlived the restart: the jobs produced before it are all still there
        kept = asyncio.run(faults.read_all(brokers, [topics.job_topic(faults.JOB_TYPE)],
                                           idle_s=3.0))[topics.job_topic(faults.JOB_TYPE)]
        kept_ids = {r.value for r in kept}
        log = faults.log_facts(worker.process.log_path)
        jobs_tally = faults.tally(expected, applied)
        result: dict[str, Any] = {
            "scenario": SCENARIO, "profile": profile,
            **faults.totals([jobs_tally], len(events), exported),
            "jobs": jobs_tally, "events": {"sent": len(events), "applied": len(exported)},
            "repeat_calls": repeat_calls, "down_s": figures["down_s"],
            "applied_at_stop": applied_at_stop,
            "recovery_s": None if first_new is None else round(first_new, 1),
            "all_applied_after_back_s": round(all_applied_s, 1),
            "lag_after": lag, "dead_lettered": dead_lettered,
            "log_kept": len(kept_ids) >= len(jobs), "log_records_read": len(kept_ids),
            "log_lines": log["log_lines"], "tracebacks": log["tracebacks"],
            "worker_alive": alive_during and worker.process.alive(), "phases": phases,
        }
        result["passed"] = bool(
            result["lost"] == 0 and result["doubled"] == 0 and result["dead_lettered"] == 0
            and lag == 0 and result["log_kept"] and result["worker_alive"])
        result["duration_s"] = round(time.monotonic() - started, 1)
        return result
    finally:
        if worker is not None:
            worker.stop()
        stack.stop()
