"""The schedules API's rules, apart from HTTP and storage. Pure: no Faust, no I/O.

Who is calling (a bearer token's tenant), what a request says (query numbers, pause and resume,
a manual run, a backfill's range), and what the answers look like (a schedule, its next fire
times in its own zone, its run history with each run's outcome as the processors recorded it).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from cronbus.agents.schedules.book import FireState, state_for
from cronbus.agents.schedules.cron import ONE_MS, fire_times, next_fire, preview
from cronbus.streams.catalog import Catalog, PayloadError, UnknownJobType
from cronbus.streams.events import CronTick
from cronbus.streams.jobs import JobState
from cronbus.streams.outcomes import EMAIL, OUTCOME_WEBHOOK, Notify
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
# fire times a preview of a schedule with a limit walks to find which of them are still left
PREVIEW_WALK_MAX = 10_000
# the times of a schedule as stored; every answer shows them in UTC
SCHEDULE_TIMES = ("run_at", "start_at", "end_at", "revision_at", "created_at")


def utc_iso(moment: datetime) -> str:
    """A time as every answer shows it: ISO 8601 in UTC."""
    return moment.astimezone(UTC).isoformat()


def epoch_iso(seconds: float) -> str:
    """A stored Unix time (run history, job status) as ISO 8601 in UTC."""
    return datetime.fromtimestamp(seconds, UTC).isoformat()


def query_time(query: Mapping[str, str], name: str) -> datetime | None:
    """An ISO 8601 time with its offset from the query (``after=2027-03-28T00:00:00Z``), or
    :class:`InvalidSchedule` naming it; None when not given."""
    raw = query.get(name)
    if raw is None or raw == "":
        return None
    moment = None
    # as sent; else with a '+' that arrived as a space (sent unencoded in a query string)
    for text in (raw.strip(), raw.strip().replace(" ", "+")):
        try:
            moment = datetime.fromisoformat(text)
            break
        except ValueError:
            continue
    if moment is None or moment.tzinfo is None:
        raise InvalidSchedule([FieldProblem(
            name, f"an ISO 8601 time with its offset, e.g. 2027-03-28T00:00:00Z; got {raw!r}")])
    return moment.astimezone(UTC)


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


def catalog_problems(body: Any, catalog: Catalog) -> list[FieldProblem]:
    """What :func:`declared` would say of a requested definition, read from the body as sent:
    so an undeclared job type is named beside the body's other bad fields, in one answer."""
    if not isinstance(body, dict) or not isinstance(body.get("job_type"), str):
        return []  # no job type (or not a string): the model names it
    payload = body.get("payload", {})
    try:
        catalog[body["job_type"]].check_payload(payload if isinstance(payload, dict) else {})
    except UnknownJobType as exc:
        return [FieldProblem("job_type", str(exc))]
    except PayloadError as exc:
        return [FieldProblem(f"payload.{name}", problem) for name, problem in exc.problems]
    return []


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
    """A 422 answer: every field that is wrong and what is wrong with it (for a backfill range
    that is too long, also the maximum and where to split it)."""
    body: dict[str, Any] = {
        "error": "invalid request",
        "problems": [{"field": p.field, "message": p.message} for p in exc.problems],
    }
    if isinstance(exc, TooManyRuns):
        body.update(max_runs=exc.max_runs, max_to=utc_iso(exc.max_to))
    return body


# a run's status as the scheduled exports design names it, from its job's state: a retry due is
# still being worked on (its next attempt will come), so it is "processing", its error the last
# attempt's; only a job given up on (dead-lettered) has "failed"
RUN_STATUS: dict[JobState, str] = {
    JobState.WAITING: "pending",
    JobState.ACTIVE: "processing",
    JobState.RETRY_DUE: "processing",
    JobState.COMPLETED: "completed",
    JobState.DEAD_LETTERED: "failed",
}


def run_status(state: JobState) -> str:
    return RUN_STATUS[state]


@dataclass(frozen=True, slots=True)
class FireProgress:
    """How far a schedule has come, by the ticker's own count: ``fired`` is the ticks the ticker
    made (what ``limit`` counts; manual runs and backfills are not counted), ``exhausted`` that
    it will fire no more (its limit reached, or no fire time left: a one-off that fired, a
    schedule past its ``end_at``)."""

    fired: int = 0
    exhausted: bool = False

    def remaining(self, schedule: Schedule) -> int | None:
        return None if schedule.limit is None else max(0, schedule.limit - self.fired)


def fire_progress(schedule: Schedule, stored: bytes | None, now: datetime) -> FireProgress:
    """A schedule's progress from the fire state the ticker saved (``stored``; None before a
    ticker took it on), read as the ticker reads it (:func:`state_for`): a timing change keeps
    the count, and a fire time after what the ticker decided is still to come."""
    try:
        saved = FireState.decode(stored) if stored else None
    except (ValueError, KeyError, TypeError):  # not the ticker's: as if none was saved
        saved = None
    state = state_for(schedule, saved, now)
    if schedule.limit is not None and state.fired >= schedule.limit:
        return FireProgress(state.fired, exhausted=True)
    left = state.buffered is not None or next_fire(schedule, state.since) is not None
    return FireProgress(state.fired, exhausted=not left)


def schedule_view(schedule: Schedule, *, last_run: FiredRun | None = None,
                  last_job: Mapping[str, Any] | None = None,
                  next_at: datetime | None = None,
                  progress: FireProgress | None = None) -> dict[str, Any]:
    """A schedule as the API shows it, with its newest run (``last_run_at``: when it was sent;
    ``last_status`` its job's, as :data:`RUN_STATUS` names it), its next fire time by its rule
    (``next_run_at``; none while paused or when it will fire no more), how many times the ticker
    fired it (``fired``, ``remaining`` of its ``limit``) and whether it is ``exhausted``. Every
    time is ISO 8601 in UTC."""
    progress = progress or FireProgress()
    last_status = None
    if last_run is not None:
        last_status = run_status(JobState.read(last_job.get("state") if last_job else None))
    view = schedule.model_dump(mode="json")
    for name in SCHEDULE_TIMES:
        moment = getattr(schedule, name)
        view[name] = None if moment is None else utc_iso(moment)
    return {**view, "kind": schedule.kind,
            "paused": not schedule.enabled,
            "fired": progress.fired,
            "remaining": progress.remaining(schedule),
            "exhausted": progress.exhausted,
            "last_run_at": None if last_run is None else epoch_iso(last_run.emitted_at),
            "last_status": last_status,
            "next_run_at": None if next_at is None or progress.exhausted else utc_iso(next_at)}


# what a schedule's answer adds to its definition: not fields a definition may send back
VIEW_ONLY = ("kind", "paused", "fired", "remaining", "exhausted", "last_run_at", "last_status",
             "next_run_at")


def default_timezone(body: Any, catalog: Catalog) -> str:
    """The time zone of a requested schedule that names none: its job type's
    (``schedule_timezone``), else UTC."""
    job_type = body.get("job_type") if isinstance(body, dict) else None
    spec = catalog.job_types.get(job_type) if isinstance(job_type, str) else None
    return (spec.schedule_timezone if spec is not None else None) or "UTC"


def with_notify_email(schedule: Schedule) -> Schedule:
    """A payload's ``notify_email`` (the scheduled exports design's notifyEmail) as the
    schedule's ``notify.email``, on both outcomes unless its notify says otherwise."""
    address = schedule.payload.get("notify_email")
    if not isinstance(address, str) or (schedule.notify and schedule.notify.email == address):
        return schedule
    if schedule.notify is not None and schedule.notify.email is not None:
        raise InvalidSchedule([FieldProblem(
            "payload.notify_email", "differs from notify.email: give one of them")])
    kept = schedule.notify.model_dump(exclude_none=True) if schedule.notify else {}
    try:
        notify = Notify(**{**kept, "email": address})
    except ValidationError:
        raise InvalidSchedule([FieldProblem("payload.notify_email",
                                            "an email address, e.g. ops@example.com")]) from None
    return schedule.model_copy(update={"notify": notify})


def notify_problems(notify: Notify | None, catalog: Catalog, *,
                    webhook_signing: bool) -> list[FieldProblem]:
    """What in a ``notify`` this deployment cannot deliver: an email with no ``email`` job type
    declared, a webhook with no signing key (or no ``outcome-webhook`` job type)."""
    problems: list[FieldProblem] = []
    if notify is None:
        return problems
    if notify.email is not None and EMAIL not in catalog:
        problems.append(FieldProblem("notify.email", f"no {EMAIL!r} job type is declared here "
                                                     "(CRONBUS_JOB_MODULES): email notices "
                                                     "cannot be sent"))
    if notify.webhook_url is not None:
        if not webhook_signing:
            problems.append(FieldProblem("notify.webhook_url", "webhook notices are off: "
                                         "CRONBUS_WEBHOOK_SIGNING_KEY is not set, so none "
                                         "could be signed"))
        elif OUTCOME_WEBHOOK not in catalog:
            problems.append(FieldProblem("notify.webhook_url",
                                         f"no {OUTCOME_WEBHOOK!r} job type is declared here"))
    return problems


def with_enabled(schedule: Schedule, enabled: bool, now: datetime) -> Schedule:
    """The schedule paused or resumed. Resuming starts afresh from ``now``: the fire times it
    was paused through are not caught up (a pause means they should not run)."""
    if schedule.enabled == enabled:
        return schedule
    return schedule.model_copy(update={"enabled": enabled, "revision_at": now})


def next_runs(schedule: Schedule, now: datetime, count: int,
              world_now: datetime | None = None, *, after: datetime | None = None,
              progress: FireProgress | None = None) -> dict[str, Any]:
    """The next ``count`` fire times after ``after`` (default: now, or when its timing last
    changed if later), in the schedule's zone and in UTC; none while it is paused or once it is
    exhausted. Its ``limit`` is honoured: of the fire times from now on, only the ``limit``
    minus ``fired`` first are listed (so a schedule one run short of its limit shows one), and
    ``end_at`` ends them. ``after`` may be any time: before now, the times its rule gives are
    listed (what did run is in its run history). A world-clock schedule's are world times, and
    "now" is its tenant's clock (``world_now``; before the clock first moved, its anchor)."""
    progress = progress or FireProgress()
    zone = ZoneInfo(schedule.timezone)
    if schedule.clock == "world":
        assert world_now is not None, "a world-clock schedule previews after its tenant's clock"
        base = world_now
    else:
        base = max(now, schedule.revision_at) if schedule.revision_at else now
    start = base if after is None else after
    times: list[datetime] = []
    if schedule.enabled and not progress.exhausted:
        times = coming_times(schedule, start, count, base=base,
                             remaining=progress.remaining(schedule))
    return {
        "schedule_id": schedule.id,
        "timezone": schedule.timezone,
        "clock": schedule.clock,
        "paused": not schedule.enabled,
        "after": utc_iso(start),
        "fired": progress.fired,
        "remaining": progress.remaining(schedule),
        "exhausted": progress.exhausted,
        "next": [{"at": t.astimezone(zone).isoformat(), "utc": utc_iso(t)} for t in times],
    }


def coming_times(schedule: Schedule, after: datetime, count: int, *, base: datetime,
                 remaining: int | None) -> list[datetime]:
    """Up to ``count`` fire times after ``after``; with ``remaining`` (what its limit leaves),
    only the first ``remaining`` fire times after ``base`` (now) are still to come. Finding them
    walks from the earlier of the two, at most :data:`PREVIEW_WALK_MAX` fire times."""
    if remaining is None:
        return preview(schedule, after, count)
    times: list[datetime] = []
    to_come = 0
    for walked, moment in enumerate(fire_times(schedule, min(after, base)), 1):
        if moment > base:
            to_come += 1
            if to_come > remaining:
                break
        if moment > after:
            times.append(moment)
            if len(times) == count:
                break
        if walked >= PREVIEW_WALK_MAX:
            raise InvalidSchedule([FieldProblem(
                "after", f"more than {PREVIEW_WALK_MAX} of its fire times lie between now and "
                f"{utc_iso(after)}, and with a limit each must be counted: choose an earlier "
                "after")])
    return times


def manual_tick(schedule: Schedule, now: datetime, key: str | None, *,
                first_at: datetime | None = None) -> CronTick:
    """A run started by hand: a cron tick for now, with an id of its own. The same idempotency
    key gives the same tick id, so a retried request runs the job once; ``first_at`` is when
    the first request with that key fired it, which a retry's tick says again."""
    trigger_key = f"key:{key}" if key is not None else f"at:{now.astimezone(UTC).isoformat()}"
    at = first_at or now
    return run_by_hand(schedule, manual_tick_id(schedule.key, trigger_key), fire_at=at, now=at)


def run_by_hand(schedule: Schedule, tick_id: str, *, fire_at: datetime, now: datetime,
                clock: Literal["wall", "world"] = "wall") -> CronTick:
    """A tick sent by the API, not the ticker: a manual run that stands for ``fire_at`` (a
    time of ``clock``)."""
    return CronTick(
        event_id=tick_id, tenant_id=schedule.tenant_id, occurred_at=now,
        schedule_id=schedule.id, job_type=schedule.job_type, fire_at=fire_at,
        payload=schedule.payload, trigger="manual", clock=clock, notify=schedule.notify,
        priority=schedule.priority,
    )


# --- backfill: every fire time of a range, run by hand ---------------------------------------

# a backfilled run's trigger in the run history; on the wire its tick and job say "manual", the
# vocabulary every worker version reads (a new value would be rejected by older ones mid-deploy)
BACKFILL = "backfill"


class _BackfillBody(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    start: AwareDatetime = Field(alias="from")
    end: AwareDatetime = Field(alias="to")


@dataclass(frozen=True, slots=True)
class BackfillRange:
    """The range a backfill runs: every fire time ``start <= t <= end`` (both inclusive, as
    Temporal's backfill)."""

    start: datetime
    end: datetime


class TooManyRuns(InvalidSchedule):
    """The range holds more fire times than one request may run; ``max_to`` is the latest ``to``
    that keeps it within the maximum (its ``max_runs``-th fire time)."""

    def __init__(self, max_runs: int, max_to: datetime) -> None:
        self.max_runs = max_runs
        self.max_to = max_to
        super().__init__([FieldProblem(
            "to", f"the range holds more than {max_runs} fire times, the most one backfill runs "
                  f"(CRONBUS_BACKFILL_MAX_RUNS); the {max_runs}th is {max_to.isoformat()}: end "
                  "there and backfill the rest from just after it")])


def backfill_range(body: Any) -> BackfillRange:
    """A backfill request's ``{"from": ..., "to": ...}`` (ISO-8601 with an offset), or
    :class:`InvalidSchedule` naming every field that is wrong."""
    if not isinstance(body, dict):
        raise InvalidSchedule([FieldProblem("body", "a JSON object is expected: "
                                                    '{"from": ISO-8601, "to": ISO-8601}')])
    try:
        parsed = _BackfillBody.model_validate(body)
    except ValidationError as exc:
        raise InvalidSchedule([_backfill_problem(e) for e in exc.errors()]) from None
    if parsed.end <= parsed.start:
        raise InvalidSchedule([FieldProblem("to", "must be after from")])
    return BackfillRange(parsed.start, parsed.end)


def _backfill_problem(error: Any) -> FieldProblem:
    field = ".".join(str(part) for part in error["loc"]) or "body"
    if error["type"] == "extra_forbidden":
        return FieldProblem(field, "not a field of a backfill; give from and to")
    if error["type"] == "missing":
        return FieldProblem(field, "required: an ISO-8601 time with its offset, "
                                   "e.g. 2026-03-01T00:00:00Z")
    return FieldProblem(field, f"{error['msg'].removeprefix('Value error, ')}: an ISO-8601 time "
                               "with its offset, e.g. 2026-03-01T00:00:00Z")


def backfill_times(schedule: Schedule, window: BackfillRange, now: datetime,
                   max_runs: int) -> list[datetime]:
    """Every fire time of ``schedule`` in the range, through :func:`fire_times` (so
    ``start_at``/``end_at`` clip it as they clip the ticker; ``limit``, pause, misfire and
    overlap do not apply: a backfill is an explicit request). At most ``max_runs``, else
    :class:`TooManyRuns`; a fire time still to come is refused (the ticker runs it)."""
    # fire times fall on whole ms: 1 ms before the start makes the start itself a candidate
    candidates = fire_times(schedule, window.start - ONE_MS)
    times = list(itertools.islice(
        itertools.takewhile(lambda t: t <= window.end,
                            (t for t in candidates if t >= window.start)),
        max_runs + 1))  # one more tells a range that is too long, without walking all of it
    if len(times) > max_runs:
        raise TooManyRuns(max_runs, times[max_runs - 1])
    if times and times[-1] > now:
        upcoming = next(t for t in times if t > now)
        raise InvalidSchedule([FieldProblem(
            "to", f"the fire time {upcoming.isoformat()} is still to come (now is "
                  f"{now.astimezone(UTC).isoformat()}); a backfill runs past fire times, the "
                  "ticker the coming ones: end the range before it")])
    return times


def backfill_tick_id(key: bytes, fire_at: datetime) -> str:
    """The id of a backfilled run of one (schedule, fire time): the same for every request that
    covers it, never equal to the ticker's or a manual run's id for that instant."""
    digest = hashlib.sha256(
        key + b"\x1fbackfill\x1f" + fire_at.astimezone(UTC).isoformat().encode()).hexdigest()
    return f"backfill-{digest[:32]}"


def backfill_tick(schedule: Schedule, fire_at: datetime, now: datetime) -> CronTick:
    """The tick of one backfilled fire time: a manual run (its job id comes from this tick's
    own id, see ``tick_ref``) that stands for ``fire_at`` (the job's ``scheduled_at``)."""
    # a world-clock schedule's fire times are world times
    return run_by_hand(schedule, backfill_tick_id(schedule.key, fire_at), fire_at=fire_at,
                       now=now, clock=schedule.clock)


def backfill_run(tick: CronTick, emitted_at: float) -> FiredRun:
    """A backfilled tick as the run history keeps it: marked ``backfill``."""
    return dataclasses.replace(FiredRun.of_tick(tick, emitted_at), trigger=BACKFILL)


def backfill_answer(schedule: Schedule, window: BackfillRange, runs: list[FiredRun],
                    sent_before: Mapping[str, float], max_runs: int) -> dict[str, Any]:
    """What a backfill answers: every fire time of the range, in order, each sent now or
    ``already`` (its job sent by an earlier backfill, at ``emitted_at``; ``sent_before`` is by
    job id); the counts; the maximum."""
    zone = ZoneInfo(schedule.timezone)
    shown = []
    for run in runs:
        already = run.job_id in sent_before
        emitted_at = round(sent_before[run.job_id], 3) if already else run.emitted_at
        shown.append({**run.as_dict(), "emitted_at": epoch_iso(emitted_at),
                      "at": datetime.fromisoformat(run.fire_at).astimezone(zone).isoformat(),
                      "already": already})
    already_count = sum(1 for r in shown if r["already"])
    return {
        "schedule_id": schedule.id,
        "from": utc_iso(window.start),
        "to": utc_iso(window.end),
        "timezone": schedule.timezone,
        "count": len(shown),
        "sent": len(shown) - already_count,
        "already": already_count,
        "max_runs": max_runs,
        "runs": shown,
    }


def run_view(run: FiredRun, status: Mapping[str, Any] | None) -> dict[str, Any]:
    """A run with its job's state (:class:`JobState`: waiting until a processor takes its job,
    active, retry_due, completed or dead_lettered; ``error`` says why), its ``status``
    (:data:`RUN_STATUS`: pending, processing, completed, failed), what its job produced
    (``result``, e.g. an export id) and the processor's times."""
    view: dict[str, Any] = {**run.as_dict(), "emitted_at": epoch_iso(run.emitted_at),
                            "state": JobState.WAITING.value,
                            "status": run_status(JobState.WAITING), "attempts": 0}
    if status is None:
        return view
    state = JobState.read(status.get("state"))
    view["state"] = state.value
    view["status"] = run_status(state)
    view["attempts"] = int(status.get("attempts", 0))
    if status.get("result"):
        view["result"] = status["result"]
    for stamp in ("started_at", "finished_at", "updated_at"):
        if status.get(stamp) is not None:
            view[stamp] = epoch_iso(float(status[stamp]))
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
