"""R2 downstream outage: the API answers every call 503 (down behind its load balancer) for a
minute while jobs keep coming, then comes back.

Proves, by the development API's own records of who called when: each worker's breaker opens;
once open, a worker's calls reach the API at most once per reset window (the half-open probe),
not every job that waited; no job is dead-lettered for the outage; every job is applied exactly
once after the API returns."""

from __future__ import annotations

import itertools
import logging
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chaos.stack import (
    ChaosStack,
    PacedProducer,
    Worker,
    metric_sum,
    plain_applied,
    plain_dead_letters,
    plain_jobs,
    polled_metric,
    wait_applied,
)

SCENARIO = "R2"
log = logging.getLogger("chaos.r2")


@dataclass(frozen=True)
class Outage:
    workers: int
    concurrency: int  # per worker: jobs waiting at the gate when it half-opens
    reset_s: float  # the breaker's reset timeout: one probe per worker per this
    before_s: float  # load before the outage
    outage_s: float
    after_s: float  # load after the API is back
    per_s: float  # jobs written per second throughout


PROFILES = {
    "full": Outage(workers=2, concurrency=25, reset_s=10, before_s=10, outage_s=60, after_s=10,
                   per_s=100),
    "ci": Outage(workers=2, concurrency=25, reset_s=3, before_s=3, outage_s=15, after_s=3,
                 per_s=100),
}
STALL_S = 120.0
# the breaker stores when it opened in whole seconds (the gate allows for the part lost), so a
# worker's next probe can come up to a second before a full reset timeout after its last call
PROBE_TOLERANCE_S = 1.0
# a call sent just before the breaker opened may be recorded just after it was seen open
IN_FLIGHT_GRACE_S = 0.5


def breaker_state(worker: Worker) -> float | None:
    return polled_metric(worker, "cronbus_breaker_state", service="api")


def run(profile: str, work_dir: Path) -> dict[str, Any]:
    plan = PROFILES[profile]
    run_id = uuid.uuid4().hex[:6]
    started = time.monotonic()
    # the default retries (3): a job whose attempts the outage burnt would be dead-lettered; an
    # open circuit must hold jobs back instead of spending their attempts
    with ChaosStack(work_dir) as stack:
        pool = stack.pool(plan.workers, roles=("processor",), name="worker", tag_callers=True,
                          processor_concurrency=plan.concurrency,
                          breaker_reset_timeout_s=plan.reset_s, retry_backoff_s=0.5)
        pool.start_all()
        job_ids: list[str] = []
        load = PacedProducer(stack.broker_url, plain_jobs(f"outage:{run_id}", job_ids),
                             plan.per_s).start()
        time.sleep(plan.before_s)

        down_at = time.time()
        stack.api.fail(503)
        log.info("R2: the API answers 503 for %.0fs", plan.outage_s)
        opened_at: dict[str, float] = {}  # worker -> when its breaker was first seen open
        while time.time() - down_at < plan.outage_s:
            for worker in pool.workers:
                state = breaker_state(worker)
                if state and worker.name not in opened_at:
                    opened_at[worker.name] = time.time()
            time.sleep(0.2)
        stack.api.stop_failing()
        up_at = time.time()
        time.sleep(plan.after_s)
        sent = load.stop()
        job_ids = job_ids[:sent]

        wait_applied(stack.api, sent, stall_s=STALL_S, scenario=SCENARIO)
        recovery_s = time.time() - up_at

        requests = stack.api.requests()
        inputs = stack.api.applied_inputs()
        applications = stack.api.applied()
        dead_letters = plain_dead_letters(stack.broker_url)
        failed = {w.name: metric_sum(w.metrics(), "cronbus_jobs_failed_total") for w in pool.workers}

    counted, doubled = plain_applied(job_ids, inputs, applications)
    per_worker = probes_by_worker(requests, down_at, up_at, opened_at, plan.reset_s)
    worst = max((w["max_calls_per_reset_window"] for w in per_worker.values()), default=0)
    breakers_opened = len(opened_at) == plan.workers
    result: dict[str, Any] = {
        "scenario": SCENARIO, "sent": counted.sent, "applied": counted.applied,
        "lost": len(counted.lost), "doubled": doubled,
        "passed": (not counted.lost and doubled == 0 and counted.applied == counted.sent
                   and breakers_opened and worst <= 1 and dead_letters == 0),
        "recovery_s": round(recovery_s, 1),
        "outage_s": plan.outage_s, "reset_timeout_s": plan.reset_s, "workers": plan.workers,
        "waiting_per_worker": plan.concurrency,
        "breakers_opened": len(opened_at),
        "max_calls_per_reset_window": worst,
        "probes": {name: w["probes"] for name, w in per_worker.items()},
        "calls_before_open": {name: w["calls_before_open"] for name, w in per_worker.items()},
        "dead_letters": dead_letters,
        "failed_attempts": {name: int(n) for name, n in failed.items()},
        "elapsed_s": round(time.monotonic() - started, 1),
    }
    if not result["passed"]:
        result["per_worker"] = per_worker
        result["lost_examples"] = counted.lost[:5]
    return result


def probes_by_worker(requests: list[dict[str, Any]], down_at: float, up_at: float,
                     opened_at: dict[str, float], reset_s: float) -> dict[str, dict[str, Any]]:
    """Per worker, the calls the API received while down: those before its breaker was seen
    open (the calls that tripped it), and after it the probes, with the most that fell within
    one reset window (allowing for the breaker's whole-second clock)."""
    out: dict[str, dict[str, Any]] = {}
    for name in sorted({r["caller"] for r in requests if r["caller"]} | set(opened_at)):
        calls = sorted(r["at"] for r in requests
                       if r["caller"] == name and down_at <= r["at"] < up_at)
        opened = opened_at.get(name)
        if opened is None:  # never seen open: every call counts against it
            before, probes = [], calls
        else:
            before = [at for at in calls if at < opened + IN_FLIGHT_GRACE_S]
            probes = [at for at in calls if at >= opened + IN_FLIGHT_GRACE_S]
        window = reset_s - PROBE_TOLERANCE_S
        most = max((sum(1 for other in probes if at <= other < at + window) for at in probes),
                   default=0)
        gaps = [b - a for a, b in itertools.pairwise(probes)]
        out[name] = {"calls_before_open": len(before), "probes": len(probes),
                     "max_calls_per_reset_window": most if opened is not None else len(calls),
                     "min_gap_s": round(min(gaps), 2) if gaps else None,
                     "probe_times_s": [round(at - down_at, 2) for at in probes]}
    return out
