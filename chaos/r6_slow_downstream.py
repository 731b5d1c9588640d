"""R6 slow downstream: for two minutes the API applies each call at once but answers only after
20 s, past the workers' timeout, while jobs keep coming; then it answers at once again.

Proves: the timeouts are classified retryable (retried, never failed as permanent, nothing
dead-lettered), no slot leaks (each worker's in-flight gauge returns to 0 and every job is
applied exactly once afterwards), memory stays bounded (each worker's RSS, from /proc, grows by
less than a fixed bound over the slow period and after it)."""

from __future__ import annotations

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
    rss_mb,
    wait_applied,
)

SCENARIO = "R6"
log = logging.getLogger("chaos.r6")


@dataclass(frozen=True)
class Slowness:
    workers: int
    concurrency: int
    answer_s: float  # how late the API answers while slow
    timeout_s: float  # the workers' downstream timeout (answer_s is past it)
    before_s: float
    slow_s: float
    after_s: float
    per_s: float
    retries: int  # enough attempts to outlast the slow period: none is dead-lettered for it


PROFILES = {
    "full": Slowness(workers=2, concurrency=25, answer_s=20, timeout_s=5, before_s=10,
                     slow_s=120, after_s=10, per_s=50, retries=20),
    "ci": Slowness(workers=2, concurrency=25, answer_s=6, timeout_s=2, before_s=3, slow_s=20,
                   after_s=3, per_s=50, retries=20),
}
STALL_S = 120.0
DRAIN_S = 60.0  # after the last job applied: in-flight back to 0 within this
# RSS may grow this much over its level when the slow period began (buffers, retry records, a
# few thousand pending jobs' state); a leak per timed-out call would grow past it and keep going
RSS_GROWTH_LIMIT_MB = 100.0


def in_flight(worker: Worker) -> float | None:
    return polled_metric(worker, "cronbus_jobs_in_flight")


def run(profile: str, work_dir: Path) -> dict[str, Any]:
    plan = PROFILES[profile]
    run_id = uuid.uuid4().hex[:6]
    started = time.monotonic()
    with ChaosStack(work_dir) as stack:
        pool = stack.pool(plan.workers, roles=("processor",), name="worker",
                          processor_concurrency=plan.concurrency, api_timeout_s=plan.timeout_s,
                          max_retries=plan.retries, retry_backoff_s=0.5, breaker_reset_timeout_s=5)
        pool.start_all()
        job_ids: list[str] = []
        load = PacedProducer(stack.broker_url, plain_jobs(f"slow:{run_id}", job_ids),
                             plan.per_s).start()
        time.sleep(plan.before_s)
        pids = {w.name: w.pid for w in pool.workers if w.pid is not None}
        rss_start = {name: rss_mb(pid) for name, pid in pids.items()}
        rss_samples: dict[str, list[float]] = {name: [] for name in pids}
        in_flight_peak = dict.fromkeys(pids, 0.0)

        def sample() -> None:
            for worker in pool.workers:
                rss_samples[worker.name].append(rss_mb(pids[worker.name]))
                now = in_flight(worker)
                if now is not None:
                    in_flight_peak[worker.name] = max(in_flight_peak[worker.name], now)

        stack.api.delay(plan.answer_s)
        slow_at = time.monotonic()
        log.info("R6: the API answers %.0fs late for %.0fs (timeout %.0fs)", plan.answer_s,
                 plan.slow_s, plan.timeout_s)
        while time.monotonic() - slow_at < plan.slow_s:
            sample()
            time.sleep(1.0)
        stack.api.delay(0)
        fast_at = time.monotonic()
        while time.monotonic() - fast_at < plan.after_s:
            sample()
            time.sleep(1.0)
        sent = load.stop()
        job_ids = job_ids[:sent]

        wait_applied(stack.api, sent, stall_s=STALL_S, scenario=SCENARIO, each=sample)
        recovery_s = time.monotonic() - fast_at

        # no slot leak: with nothing left to do, every worker's in-flight gauge is 0
        deadline = time.monotonic() + DRAIN_S
        left: dict[str, float | None] = {}
        while time.monotonic() < deadline:
            left = {w.name: in_flight(w) for w in pool.workers}
            if all(n == 0 for n in left.values()):
                break
            time.sleep(1.0)
        sample()
        rss_end = {name: rss_mb(pid) for name, pid in pids.items()}
        texts = {w.name: w.metrics() for w in pool.workers}
        inputs = stack.api.applied_inputs()
        applications = stack.api.applied()
        dead_letters = plain_dead_letters(stack.broker_url)

    counted, doubled = plain_applied(job_ids, inputs, applications)
    retryable = sum(metric_sum(t, "cronbus_jobs_failed_total", kind="retryable")
                    for t in texts.values())
    permanent = sum(metric_sum(t, "cronbus_jobs_failed_total", kind="permanent")
                    for t in texts.values())
    timeouts = sum(metric_sum(t, "cronbus_downstream_request_seconds_count", status_class="error")
                   for t in texts.values())
    growth = {name: round(max(rss_samples[name] + [rss_end[name]]) - rss_start[name], 1)
              for name in pids}
    over_limit = [name for name, mb in growth.items() if mb > RSS_GROWTH_LIMIT_MB]
    leaked = {name: n for name, n in left.items() if n != 0}
    result: dict[str, Any] = {
        "scenario": SCENARIO, "sent": counted.sent, "applied": counted.applied,
        "lost": len(counted.lost), "doubled": doubled,
        "passed": (not counted.lost and doubled == 0 and counted.applied == counted.sent
                   and retryable > 0 and timeouts > 0 and permanent == 0 and dead_letters == 0
                   and not leaked and not over_limit),
        "recovery_s": round(recovery_s, 1),
        "slow_s": plan.slow_s, "answer_s": plan.answer_s, "timeout_s": plan.timeout_s,
        "timed_out_calls": int(timeouts), "retryable_failures": int(retryable),
        "permanent_failures": int(permanent), "dead_letters": dead_letters,
        "in_flight_peak": in_flight_peak, "in_flight_end": left,
        "worker_pids": pids,
        "rss_start_mb": {k: round(v, 1) for k, v in rss_start.items()},
        "rss_growth_mb": growth, "rss_limit_mb": RSS_GROWTH_LIMIT_MB,
        "elapsed_s": round(time.monotonic() - started, 1),
    }
    if not result["passed"]:
        result["lost_examples"] = counted.lost[:5]
    return result
