"""R1 kill storm: jobs through ingest (immediate events and debounced windows), schedules through
the ticker and plain jobs on their topic, while kill -9s hit random workers, each restarted.

Proves, by the development API's own records: nothing lost (every job, every event, every
schedule fire reached the API), nothing doubled (each plain job and immediate event applied
under one key once, each window event covered by exactly one applied window, each schedule fire
time applied once and no fire time that was not due), whatever a kill interrupted."""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from chaos.job_types import EVENT, PLAIN, TICK, WINDOW, EventRequested, WindowRequested
from chaos.stack import (
    ChaosStack,
    Tally,
    event_record,
    job_record,
    produce,
    schedule_record,
    tally,
)
from cronbus.streams.jobs import Job, job_id_for
from cronbus.streams.schedules import Schedule

SCENARIO = "R1"
log = logging.getLogger("chaos.r1")


@dataclass(frozen=True)
class Load:
    plain: int  # jobs written onto their topic
    events: int  # immediate events: a job each
    windows: int  # tenants sending a burst of events: one debounced job each
    window_events: int  # events per burst
    schedules: int  # interval schedules, each firing `fires` times
    fires: int
    every_s: int
    kills: int
    workers: int
    gap_s: tuple[float, float]  # seconds between two kills, picked at random in this range

    @property
    def jobs(self) -> int:
        return self.plain + self.events + self.windows + self.schedules * self.fires


PROFILES = {
    # the 50,000 jobs and 20 kills
    "full": Load(plain=25_000, events=15_000, windows=2_000, window_events=5, schedules=100,
                 fires=80, every_s=2, kills=20, workers=3, gap_s=(6.0, 16.0)),
    "ci": Load(plain=2_500, events=1_500, windows=200, window_events=5, schedules=25, fires=20,
               every_s=1, kills=3, workers=3, gap_s=(4.0, 8.0)),
}
STALL_S = 180.0  # no progress at the API for this long after the storm: stalled
SETTLE_S = 8.0  # after everything arrived: time for a late duplicate to show


def _slices(n: int, parts: int) -> list[range]:
    step = -(-n // parts)
    return [range(i, min(n, i + step)) for i in range(0, n, step)] if n else []


def run(profile: str, work_dir: Path) -> dict[str, Any]:
    load = PROFILES[profile]
    rng = random.Random()
    run_id = uuid.uuid4().hex[:6]
    started = time.monotonic()
    with ChaosStack(work_dir) as stack:
        pool = stack.pool(load.workers, name="worker",
                          # a fire overdue after a kill's handover still runs (none is "missed")
                          schedule_misfire_grace_s=600, retry_backoff_s=0.5,
                          processor_concurrency=50,
                          # a killed member is noticed, and its partitions handed on, sooner
                          broker_session_timeout_s=3, broker_rebalance_timeout_s=3)
        pool.start_all()
        now = datetime.now(UTC)

        # schedules first: they fire through the whole storm
        start_at = now.replace(microsecond=0) + timedelta(seconds=10)
        schedules = [Schedule.model_validate({
            "id": f"sched-{run_id}-{n}", "tenant_id": f"s{n % 20}", "name": f"chaos {n}",
            "job_type": TICK, "every_ms": load.every_s * 1000, "start_at": start_at,
            "end_at": start_at + timedelta(seconds=load.every_s * (load.fires - 1)),
            "misfire": "run_all", "misfire_limit": 10_000, "revision_at": now,
        }) for n in range(load.schedules)]
        produce(stack.broker_url, (schedule_record(s) for s in schedules))
        expected_ticks = {s.job_id_at(start_at + timedelta(seconds=load.every_s * k))
                          for s in schedules for k in range(load.fires)}

        plain_ids = [job_id_for(f"p{i % 100}", PLAIN, f"chaos:{run_id}:{i}")
                     for i in range(load.plain)]
        plain_slices = _slices(load.plain, load.kills)
        event_slices = _slices(load.events, load.kills)
        window_slices = _slices(load.windows, load.kills)
        window_events: dict[str, list[str]] = {}  # window tenant -> its events' ids

        def records(round_: int) -> list[tuple[str, bytes, bytes]]:
            at = datetime.now(UTC)
            out = []
            for i in plain_slices[round_] if round_ < len(plain_slices) else ():
                out.append(job_record(Job(job_id=plain_ids[i], tenant_id=f"p{i % 100}",
                                          type=PLAIN, triggered_by="event", scheduled_at=at,
                                          payload={"n": i})))
            for i in event_slices[round_] if round_ < len(event_slices) else ():
                out.append(event_record(EventRequested(
                    event_id=f"evt-{run_id}-{i}", tenant_id=f"e{i % 100}", occurred_at=at, n=i)))
            for i in window_slices[round_] if round_ < len(window_slices) else ():
                tenant = f"w{run_id}-{i}"  # a tenant of its own: its burst is one window
                ids = [f"win-{run_id}-{i}-{k}" for k in range(load.window_events)]
                window_events[tenant] = ids
                out += [event_record(WindowRequested(event_id=event_id, tenant_id=tenant,
                                                     occurred_at=at, n=k))
                        for k, event_id in enumerate(ids)]
            rng.shuffle(out)  # plain jobs, events and windows interleaved as producers would
            return out

        # the storm: each round writes a share of the load, then kill -9s a random worker
        # (mid-batch, mid-window, mid-fire) and starts it again at once; the next kill comes
        # after a random gap, ready or not (a kill may hit a worker starting or rebalancing)
        for round_ in range(load.kills):
            produce(stack.broker_url, records(round_))
            time.sleep(rng.uniform(0.5, 2.0))
            pool.kill_and_restart(rng, wait_ready=False)
            last_kill = time.monotonic()
            if round_ < load.kills - 1:
                time.sleep(rng.uniform(*load.gap_s))
        back_s = pool.wait_all_ready()

        wanted = load.jobs
        last, last_change = -1, time.monotonic()
        while True:
            keys = stack.api.applied_count()["keys"]
            if keys != last:
                last, last_change = keys, time.monotonic()
            if keys >= wanted:
                break
            if time.monotonic() - last_change > STALL_S:
                log.warning("R1: no progress at the API for %.0fs at %d of %d keys", STALL_S,
                            keys, wanted)
                break
            time.sleep(1.0)
        recovery_s = time.monotonic() - last_kill
        time.sleep(SETTLE_S)  # a window or tick applied twice under another key would show now

        inputs = stack.api.applied_inputs()
        applications = stack.api.applied()
        requests = stack.api.applied_count()["requests"]
        by_type: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        for key, given in inputs.items():
            by_type.setdefault(given.get("type", "?"), []).append((key, given))

        tallies = {
            "plain": tally(plain_ids, (key for key, _ in by_type.get(PLAIN, []))),
            "event": tally((f"evt-{run_id}-{i}" for i in range(load.events)),
                           (given["payload"]["event_id"] for _, given in by_type.get(EVENT, []))),
            "window_event": tally(
                (event_id for ids in window_events.values() for event_id in ids),
                (event_id for _, given in by_type.get(WINDOW, [])
                 for event_id in given["payload"]["covers"]["event_ids"])),
            "tick": tally(expected_ticks, (key for key, _ in by_type.get(TICK, []))),
        }
        # a tick key no fire time explains, a key of no kind sent: applied and never asked for
        unexpected = sorted(set(inputs) - set(plain_ids) - expected_ticks
                            - {k for k, _ in by_type.get(EVENT, [])}
                            - {k for k, _ in by_type.get(WINDOW, [])})
        over_applied = sorted(key for key, n in applications.items() if n > 1)
        windows_fired = Counter(given["tenantId"] for _, given in by_type.get(WINDOW, []))
        windows_done = sum(1 for tenant, ids in window_events.items()
                           if windows_fired[tenant] and all(
                               e not in tallies["window_event"].lost for e in ids))

    lost = sum(len(t.lost) for t in tallies.values())
    doubled = sum(len(t.doubled) for t in tallies.values()) + len(unexpected) + len(over_applied)
    applied = (tallies["plain"].applied + tallies["event"].applied + windows_done
               + tallies["tick"].applied)
    kills = pool.kills
    result: dict[str, Any] = {
        "scenario": SCENARIO, "sent": wanted, "applied": applied, "lost": lost,
        "doubled": doubled,
        "passed": lost == 0 and doubled == 0 and applied == wanted and len(kills) == load.kills,
        "recovery_s": round(recovery_s, 1),
        "kills": len(kills), "workers": load.workers,
        "by_kind": {name: t.as_dict() for name, t in tallies.items()},
        "windows": load.windows, "windows_fired": sum(windows_fired.values()),
        "windows_split": sum(n - 1 for n in windows_fired.values() if n > 1),
        "unexpected_keys": len(unexpected),
        "api_requests": requests, "repeat_calls": requests - len(applications),
        "kills_of_unready": sum(1 for k in kills if not k["was_ready"]),
        "all_ready_after_s": round(back_s, 1),
        "elapsed_s": round(time.monotonic() - started, 1),
    }
    if not result["passed"]:
        result["examples"] = _examples(tallies, unexpected, over_applied)
    return result


def _examples(tallies: dict[str, Tally], unexpected: list[str],
              over_applied: list[str]) -> dict[str, list[str]]:
    """A few of what went wrong, by kind, for the report."""
    out = {f"{name}_lost": t.lost[:5] for name, t in tallies.items() if t.lost}
    out.update({f"{name}_doubled": t.doubled[:5] for name, t in tallies.items() if t.doubled})
    if unexpected:
        out["unexpected"] = unexpected[:5]
    if over_applied:
        out["applied_twice"] = over_applied[:5]
    return out

