"""R3 Redis outage: the worker's Redis stopped under load, then started again empty.

One worker runs every role (ingest, processors, ticker, bridge, API) on a Redis of the
scenario's own, which keeps nothing on disk (as the development machines'). While jobs (the
benchmarks' one-call type), ``export-requested`` events (through ingest) and every-second
schedules (through the ticker) flow, Redis is stopped for the outage and restarted empty.

Asserted from outside:

- no worker exits; health says ``degraded`` (Redis down) during the outage, never
  ``unhealthy``; the schedules API answers 503, not 500;
- the log says it once per component (one warning when Redis goes, one info when it is back),
  with no traceback: ``log_lines``/``log_bytes`` are what the worker wrote during the outage;
- after it returns nothing is lost: every job, every event's export and every fire time of
  every schedule is applied at the development API exactly once (its own records), and no job
  was dead-lettered because of the outage;
- health is ``healthy`` again (every component up, the bridge subscribed) within
  ``HEALTH_BACK_S`` of Redis's restart (``health_back_s``, polled from the restart on), and
  still ``healthy`` once every job is applied (``health_after``; its components when it is not).
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from chaos import faults
from cronbus.clients.devstack.harness import WorkerProcess
from cronbus.streams import topics
from cronbus.streams.events import ExportRequested, encode_event
from cronbus.streams.jobs import job_id_for
from cronbus.streams.keys import tenant_key
from cronbus.streams.schedules import Schedule, tick_trigger_ref

SCENARIO = "R3"
PROFILES = {
    "full": {"pre_s": 10.0, "outage_s": 30.0, "post_s": 10.0, "jobs": 6000, "events": 600,
             "schedules": 20},
    "ci": {"pre_s": 4.0, "outage_s": 10.0, "post_s": 3.0, "jobs": 1500, "events": 150,
           "schedules": 10},
}
TOKEN = "chaos-r3-token"
SCHEDULE_TENANT = "sch-tenant"
# the components that call Redis and must say its outage once each
COMPONENTS = ("processor bench-call", "processor export", "ticker", "schedules API")
# README "What a Redis outage costs": /health is healthy again this soon after Redis is back
HEALTH_BACK_S = 15.0
# how long health is watched after the restart, past the bound, so a late return has a figure
HEALTH_WATCH_S = 90.0


def _schedules(n: int, start: datetime, end: datetime, now: datetime) -> list[Schedule]:
    return [Schedule.model_validate({
        "id": f"r3-sec-{k}", "tenant_id": SCHEDULE_TENANT, "name": f"every second {k}",
        "job_type": "export", "every_ms": 1000, "revision_at": now, "start_at": start,
        "end_at": end, "misfire": "run_all", "misfire_limit": 1000}) for k in range(n)]


def _fire_times(start: datetime, end: datetime) -> list[datetime]:
    times, at = [], start
    while at <= end:
        times.append(at)
        at += timedelta(seconds=1)
    return times


def _watch_health(worker: WorkerProcess, back_at: float, back_after: list[float],
                  not_up: dict[str, float]) -> None:
    """Polls /health from Redis's restart until it says healthy; appends the seconds it took,
    and notes for each component that was not up the last second since the restart it was not."""
    while time.monotonic() - back_at < HEALTH_WATCH_S:
        body = faults.health(worker)
        since = round(time.monotonic() - back_at, 1)
        if body.get("status") == "healthy":
            back_after.append(since)
            return
        for name, component in (body.get("components") or {}).items():
            if component.get("status") != "up":
                not_up[name] = since
                for role in component.get("stalled") or {}:  # progress: whose records
                    not_up[f"{name}:{role}"] = since
        time.sleep(0.25)


def run(profile: str, work_dir: Path) -> dict[str, Any]:
    figures = PROFILES[profile]
    started = time.monotonic()
    run_id = uuid.uuid4().hex[:6]
    stack, own_redis = faults.stack_with_own_redis(work_dir)
    worker = None
    try:
        assert stack.api is not None
        api_control = stack.api.control_url
        env = faults.worker_env(stack, work_dir, job_types=f"{faults.JOB_TYPE},export",
                                web_api_tokens=f"{TOKEN}:{SCHEDULE_TENANT}",
                                processor_concurrency="50")
        worker = faults.start_worker("worker", env, work_dir,
                                     roles=("ingest", "processor", "ticker", "bridge", "api"))
        brokers = faults.brokers_of(stack)
        load_s = figures["pre_s"] + figures["outage_s"] + figures["post_s"]

        # the load: jobs, events through ingest, schedules through the ticker
        jobs = faults.bench_jobs(run_id, figures["jobs"])
        now = datetime.now(UTC)
        events = [ExportRequested(event_id=f"r3-{run_id}-{k}", tenant_id=f"ev-{k % 10}",
                                  occurred_at=now, export_id=f"x{k}")
                  for k in range(figures["events"])]
        records = faults.job_topic_records(jobs)
        step = max(1, len(records) // max(1, len(events)))
        for k, event in enumerate(events):  # spread the events among the jobs
            records.insert(min(len(records), k * (step + 1)),
                           (topics.EXPORT_REQUESTED, tenant_key(event.tenant_id),
                            encode_event(event)))
        first_fire = now.replace(microsecond=0) + timedelta(seconds=3)
        last_fire = first_fire + timedelta(seconds=int(load_s) - 3)
        schedules = _schedules(figures["schedules"], first_fire, last_fire, now)
        fires = _fire_times(first_fire, last_fire)
        schedule_keys = {job_id_for(s.tenant_id, s.job_type, tick_trigger_ref(s.id, at))
                         for s in schedules for at in fires}
        asyncio.run(faults.produce_steadily(
            brokers, [(topics.SCHEDULES, s.key, s.encode()) for s in schedules], seconds=0))

        load_error: list[BaseException] = []

        def produce() -> None:
            try:
                asyncio.run(faults.produce_steadily(brokers, records, seconds=load_s))
            except BaseException as exc:  # reported in the result
                load_error.append(exc)

        producer = threading.Thread(target=produce, name="r3-load", daemon=True)
        producer.start()
        time.sleep(figures["pre_s"])

        # the outage
        log_path = worker.process.log_path
        before = faults.log_facts(log_path)
        own_redis.stop()
        down_at = time.monotonic()
        verdicts: Counter[str] = Counter()
        api_answers: Counter[int] = Counter()
        peak_rss = 0.0
        while time.monotonic() - down_at < figures["outage_s"]:
            verdicts[faults.health(worker).get("status", "?")] += 1
            try:
                api_answers[httpx.get(
                    f"{worker.base_url}/schedules/{schedules[0].id}/runs",
                    headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10).status_code] += 1
            except httpx.HTTPError:
                api_answers[0] += 1
            peak_rss = max(peak_rss, faults.rss_mb(worker.process.pid))
            time.sleep(1.0)
        alive_during = worker.process.alive()
        own_redis.start()  # empty, on the same port
        back_at = time.monotonic()
        health_back: list[float] = []
        not_up_after_back: dict[str, float] = {}
        health_watch = threading.Thread(
            target=_watch_health, args=(worker, back_at, health_back, not_up_after_back),
            name="r3-health", daemon=True)
        health_watch.start()
        producer.join(timeout=load_s + 120)

        # after: everything applied once, nothing dead-lettered
        expected_jobs = {job.job_id for job in jobs}

        def progress() -> tuple[dict[str, int], set[str]]:
            return faults.applied_and_exported(api_control)

        def complete(state: tuple[dict[str, int], set[str]]) -> bool:
            applied, exported = state
            return (all(k in applied for k in expected_jobs)
                    and all(k in applied for k in schedule_keys)
                    and len(exported) >= len(events))

        applied, exported = faults.wait_or_last(progress, complete, timeout_s=300, interval_s=2,
                                                what="every job, export and fire applied")
        all_applied_s = time.monotonic() - back_at
        # the API answers again once Redis does (the run history it kept is gone: empty)
        api_after = httpx.get(f"{worker.base_url}/schedules/{schedules[0].id}/runs",
                              headers={"Authorization": f"Bearer {TOKEN}"},
                              timeout=10).status_code
        after = faults.log_facts(log_path)
        health_watch.join(timeout=HEALTH_WATCH_S + 30)
        health_back_s = health_back[0] if health_back else None
        final_detail = faults.health(worker)
        final_health = final_detail.get("status")
        peak_rss = max(peak_rss, faults.rss_mb(worker.process.pid))
        dead_lettered = faults.dead_lettered(brokers)
        text = log_path.read_text(errors="replace")
        warned = {c: text.count(f"{c}: Redis is unavailable") for c in COMPONENTS}
        back = {c: text.count(f"{c}: Redis answers again") for c in COMPONENTS}
        bridge_warnings = sum(1 for line in text.splitlines()
                              if "Redis pub/sub at" in line and "unavailable" in line)
        jobs_tally = faults.tally(expected_jobs, applied)
        fires_tally = faults.tally(schedule_keys, applied)
        result: dict[str, Any] = {
            "scenario": SCENARIO, "profile": profile,
            **faults.totals([jobs_tally, fires_tally], len(events), exported),
            "jobs": jobs_tally, "events": {"sent": len(events), "applied": len(exported)},
            "fires": fires_tally, "outage_s": figures["outage_s"],
            "all_applied_after_back_s": round(all_applied_s, 1),
            "dead_lettered": dead_lettered,
            "health_during": dict(verdicts), "health_back_s": health_back_s,
            "not_up_after_back_s": not_up_after_back,
            "health_after": final_health,
            "api_during": {str(k): v for k, v in api_answers.items()}, "api_after": api_after,
            "warned": warned, "back": back, "bridge_outage_warnings": bridge_warnings,
            "log_lines": after["log_lines"] - before["log_lines"],
            "log_bytes": after["log_bytes"] - before["log_bytes"],
            "tracebacks": after["tracebacks"] - before["tracebacks"],
            "peak_rss_mb": round(peak_rss, 1),
            "worker_alive": alive_during and worker.process.alive(),
            "load_error": str(load_error[0]) if load_error else None,
        }
        if final_health != "healthy":  # which component, and why
            result["health_after_components"] = final_detail.get("components")
        result["passed"] = bool(
            result["lost"] == 0 and result["doubled"] == 0 and dead_lettered == 0
            and result["worker_alive"] and not load_error
            and verdicts.get("unhealthy", 0) == 0 and verdicts.get("degraded", 0) > 0
            and health_back_s is not None and health_back_s <= HEALTH_BACK_S
            and final_health == "healthy"
            and api_answers.get(500, 0) == 0 and api_answers.get(503, 0) > 0 and api_after == 200
            and all(n == 1 for n in warned.values()) and all(n == 1 for n in back.values())
            and bridge_warnings <= 1 and result["tracebacks"] == 0)
        result["duration_s"] = round(time.monotonic() - started, 1)
        return result
    finally:
        if worker is not None:
            worker.stop()
        stack.stop()
