"""The schedules API's rules, apart from HTTP and storage. Pure: no Faust, no I/O.

Who is calling (a bearer token's tenant), what a request says (query numbers, pause and resume,
a manual run), and what the answers look like (a schedule, its next fire times in its own zone,
its run history with each run's outcome as the processors recorded it).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from cronbus.agents.schedules.cron import preview
from cronbus.streams.catalog import Catalog, PayloadError, UnknownJobType
from cronbus.streams.events import CronTick
from cronbus.streams.jobs import JobState
from cronbus.streams.schedule_runs import FiredRun
from cronbus.streams.schedules import (
    FieldProblem,
    InvalidSchedule,
    Schedule,
    manual_tick_id,
)

PREVIEW_DEFAULT, PREVIEW_MAX = 5, 100
RUNS_DEFAULT = 20
IDEMPOTENCY_KEY_MAX = 200


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def query_count(query: Mapping[str, str], name: str, *, default: int, maximum: int) -> int:
    """A whole-number query parameter 1..maximum, or :class:`InvalidSchedule` naming it."""
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    if not raw.strip().isdigit() or not 1 <= int(raw) <= maximum:
        raise InvalidSchedule([FieldProblem(name, f"a whole number 1..{maximum}; got {raw!r}")])
    return int(raw)


def idempotency_key(headers: Mapping[str, str]) -> str | None:
    key = headers.get("Idempotency-Key")
    if key is None:
        return None
    key = key.strip()
    if not key or len(key) > IDEMPOTENCY_KEY_MAX:
        raise InvalidSchedule([FieldProblem(
            "Idempotency-Key", f"1..{IDEMPOTENCY_KEY_MAX} characters when given")])
    return key


def declared(schedule: Schedule, catalog: Catalog) -> Schedule:
    """The schedule, if the catalog declares its job type and its payload fits that type's
    model; else :class:`InvalidSchedule` naming each problem."""
    try:
        catalog[schedule.job_type].check_payload(schedule.payload)
    except UnknownJobType as exc:
        raise InvalidSchedule([FieldProblem("job_type", str(exc))]) from None
    except PayloadError as exc:
        raise InvalidSchedule([FieldProblem(f"payload.{name}", problem)
                               for name, problem in exc.problems]) from None
    return schedule


DEFERRED_EFFECT = "deferred-effect"  # the job type that executes an effect (cronbus.families)


def deferred_effect(effect_id: str, body: Any) -> dict[str, Any]:
    """The one-off schedule of an effect deferred to ``execute_at`` (``clock`` "wall", the
    default, or "world": the caller's world time): ``{"execute_at": ..., "clock": "world"}``."""
    if not isinstance(body, dict):
        raise InvalidSchedule([FieldProblem("body", "a JSON object is expected")])
    unknown = sorted(set(body) - {"execute_at", "clock"})
    problems = [FieldProblem(name, "not a field of a deferred effect (execute_at, clock)")
                for name in unknown]
    if "execute_at" not in body:
        problems.append(FieldProblem("execute_at", "when to execute it: an ISO 8601 time"))
    if problems:
        raise InvalidSchedule(problems)
    return {"id": f"effect.{effect_id}", "name": f"deferred effect {effect_id}",
            "job_type": DEFERRED_EFFECT, "clock": body.get("clock", "wall"),
            "run_at": body["execute_at"], "payload": {"effect_id": effect_id}}


def problems_body(exc: InvalidSchedule) -> dict[str, Any]:
    """A 422 answer: every field that is wrong and what is wrong with it."""
    return {
        "error": "invalid request",
        "problems": [{"field": p.field, "message": p.message} for p in exc.problems],
    }


def schedule_view(schedule: Schedule) -> dict[str, Any]:
    return {**schedule.model_dump(mode="json"), "kind": schedule.kind,
            "paused": not schedule.enabled}


def with_enabled(schedule: Schedule, enabled: bool, now: datetime) -> Schedule:
    """The schedule paused or resumed. Resuming starts afresh from ``now``: the fire times it
    was paused through are not caught up (a pause means they should not run)."""
    if schedule.enabled == enabled:
        return schedule
    return schedule.model_copy(update={"enabled": enabled, "revision_at": now})


def next_runs(schedule: Schedule, now: datetime, count: int,
              world_now: datetime | None = None) -> dict[str, Any]:
    """The next ``count`` fire times after ``now``, in the schedule's zone and in UTC; none while
    it is paused. ``limit`` is not applied (how many ran is the ticker's count). A world-clock
    schedule's are world times after its tenant's clock (``world_now``; before the clock first
    moved, from the schedule's anchor)."""
    zone = ZoneInfo(schedule.timezone)
    if schedule.clock == "world":
        anchor = schedule.run_at or schedule.start_at
        assert anchor is not None
        after = world_now if world_now is not None else anchor - timedelta(milliseconds=1)
    else:
        after = max(now, schedule.revision_at) if schedule.revision_at else now
    times = preview(schedule, after, count) if schedule.enabled else []
    return {
        "schedule_id": schedule.id,
        "timezone": schedule.timezone,
        "clock": schedule.clock,
        "paused": not schedule.enabled,
        "next": [{"at": t.astimezone(zone).isoformat(), "utc": t.astimezone(UTC).isoformat()}
                 for t in times],
    }


def manual_tick(schedule: Schedule, now: datetime, key: str | None) -> CronTick:
    """A run started by hand: a cron tick for now, with an id of its own. The same idempotency
    key gives the same tick, so a retried request runs the job once."""
    trigger_key = f"key:{key}" if key is not None else f"at:{now.astimezone(UTC).isoformat()}"
    return CronTick(
        event_id=manual_tick_id(schedule.key, trigger_key),
        tenant_id=schedule.tenant_id,
        occurred_at=now,
        schedule_id=schedule.id,
        job_type=schedule.job_type,
        fire_at=now,
        payload=schedule.payload,
        trigger="manual",
    )


def run_view(run: FiredRun, status: Mapping[str, Any] | None) -> dict[str, Any]:
    """A run with its job's state (:class:`JobState`: waiting until a processor takes its job,
    active, retry_due, completed or dead_lettered; ``error`` says why), with the processor's
    times."""
    view: dict[str, Any] = {**run.as_dict(), "state": JobState.WAITING.value, "attempts": 0}
    if status is None:
        return view
    view["state"] = JobState.read(status.get("state")).value
    view["attempts"] = int(status.get("attempts", 0))
    for stamp in ("started_at", "finished_at", "updated_at"):
        if status.get(stamp) is not None:
            view[stamp] = datetime.fromtimestamp(float(status[stamp]), UTC).isoformat()
    if status.get("last_error"):
        view["error"] = status["last_error"]
    return view


def distinct_runs(runs: list[FiredRun]) -> list[FiredRun]:
    """Newest first, each run once (a tick doubled in flight may have been recorded twice)."""
    seen: set[str] = set()
    kept = []
    for run in runs:
        if run.run_id not in seen:
            seen.add(run.run_id)
            kept.append(run)
    return kept
