"""Schedules: what fires when, for which tenant, and how a definition is checked.

A schedule is one of three kinds: a cron pattern in an IANA time zone, an interval
(``every_ms``), or a one-off (``run_at``; a request may say ``delay_ms`` instead). It is stored as
a record on the compacted ``schedules`` topic keyed by :func:`schedule_key` (tenant and id, so
two tenants never share or learn of each other's ids); a tombstone removes it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
)

from cronbus.streams.events import CronTick, InvalidReason, JobTypeName, TenantId
from cronbus.streams.jobs import job_id_for
from cronbus.streams.outcomes import Notify
from cronbus.streams.priorities import Priority

ScheduleId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._:@-]{1,128}$")]
Misfire = Literal["skip", "run_once", "run_all"]
Clock = Literal["wall", "world"]
Overlap = Literal["allow", "skip", "buffer_one"]

MAX_EVERY_MS = 366 * 86_400_000
CRON_MACROS = {
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *",
}
# what changes *when* a schedule fires; changing any of them starts it afresh from that moment
TIMING_FIELDS = ("clock", "cron", "timezone", "every_ms", "limit", "run_at", "start_at", "end_at",
                 "enabled")
# stamped by the store, never part of what a schedule says: not in its identity nor in "the same
# definition" (created_at is kept from the first write, revision_at from the last timing change)
STAMPS = frozenset({"revision_at", "created_at"})


class Schedule(BaseModel):
    """One schedule as stored. ``revision_at`` is when its timing last changed: it fires only
    at times after that (a one-off fires once even if ``run_at`` is already past)."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    id: ScheduleId
    tenant_id: TenantId
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    # "world": run_at, start_at, end_at and the fire times are the tenant's world time, and it
    # fires as the tenant's world clock passes them, however far it jumps
    clock: Clock = "wall"
    job_type: JobTypeName  # declared in the catalog: the API checks it
    payload: dict[str, Any] = Field(default_factory=dict)
    cron: str | None = None
    timezone: str = "UTC"
    every_ms: int | None = Field(default=None, ge=1000, le=MAX_EVERY_MS)
    limit: int | None = Field(default=None, ge=1)
    run_at: AwareDatetime | None = None
    start_at: AwareDatetime | None = None
    end_at: AwareDatetime | None = None
    enabled: bool = True
    misfire: Misfire = "run_once"
    misfire_limit: int = Field(default=10, ge=1, le=10_000)
    overlap: Overlap = "allow"
    notify: Notify | None = None  # who to tell of each run's outcome
    # its jobs' priority (1..10 or low/normal/high/critical); none: the job type's default
    priority: Priority | None = None
    revision_at: AwareDatetime | None = None
    # when it was first stored: an interval without start_at is anchored here. None on a record
    # stored before cronbus kept it (and on built-ins): such an interval keeps the epoch anchor
    created_at: AwareDatetime | None = None

    @field_validator("cron")
    @classmethod
    def _one_space_between_fields(cls, cron: str | None) -> str | None:
        """``0  5 * * *`` and ``0 5 * * *`` are one pattern (and ``@Daily`` is ``@daily``)."""
        if cron is None:
            return None
        fields = " ".join(cron.split())
        return fields.lower() if fields.startswith("@") else fields

    @property
    def key(self) -> bytes:
        return schedule_key(self.tenant_id, self.id)

    @property
    def kind(self) -> Literal["cron", "every", "once"]:
        if self.cron is not None:
            return "cron"
        return "every" if self.every_ms is not None else "once"

    def encode(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()

    @property
    def anchor(self) -> datetime | None:
        """Where an interval's grid starts: ``start_at``, else when it was created (None: a
        record from before cronbus kept ``created_at``, on the epoch's grid as it always was)."""
        return self.start_at or self.created_at

    def same_definition(self, other: Schedule) -> bool:
        """True if ``other`` says the same thing (its stamps aside)."""
        return self.model_dump(exclude=STAMPS) == other.model_dump(exclude=STAMPS)

    def same_timing(self, other: Schedule) -> bool:
        return all(getattr(self, name) == getattr(other, name) for name in TIMING_FIELDS)

    def job_id_at(self, fire_at: datetime) -> str:
        """The id of the job its tick for ``fire_at`` becomes (what ingest derives, too)."""
        return job_id_for(self.tenant_id, self.job_type, tick_trigger_ref(self.id, fire_at))


@dataclass(frozen=True, slots=True)
class FieldProblem:
    field: str
    message: str


class InvalidSchedule(ValueError):
    """A schedule definition is wrong; ``problems`` name each field and what is wrong with it."""

    def __init__(self, problems: list[FieldProblem],
                 reason: InvalidReason = InvalidReason.BAD_FIELD) -> None:
        self.problems = problems
        self.reason = reason  # as a metric labels it, like a rejected event's
        super().__init__("; ".join(f"{p.field}: {p.message}" for p in problems))


def schedule_key(tenant_id: str, schedule_id: str) -> bytes:
    return f"{tenant_id}/{schedule_id}".encode()


def tenant_of_key(key: bytes) -> str:
    return key.decode().split("/", 1)[0]


def cron_fields(expression: str) -> list[str]:
    """A cron pattern's fields in croniter's order: minute hour day month weekday [second];
    macros expanded. Six fields are written seconds first, as BullMQ's cron-parser and Quartz
    read them (``*/5 * * * * *`` is every 5 seconds); croniter reads its seconds field last,
    so the first field moves to the end."""
    fields = CRON_MACROS.get(expression.strip().lower(), expression).split()
    if len(fields) == 6:
        return [*fields[1:], fields[0]]
    return fields


@lru_cache(maxsize=4096)  # croniter's check costs ~65 µs; a loaded topic repeats few patterns
def is_cron_pattern(expression: str) -> bool:
    fields = cron_fields(expression)
    return len(fields) in (5, 6) and croniter.is_valid(" ".join(fields))


def parse_schedule(data: dict[str, Any]) -> Schedule:
    """A stored or requested definition as a :class:`Schedule`, or :class:`InvalidSchedule`
    naming every field that is wrong (one problem per field), not only the first ones found."""
    try:
        schedule = Schedule.model_validate(data)
    except ValidationError as exc:
        problems = [
            FieldProblem(".".join(str(part) for part in e["loc"]) or "schedule",
                         e["msg"].removeprefix("Value error, "))
            for e in exc.errors()
        ]
        # the model stops at types and ranges: the rules between fields are checked on what
        # was sent too, so a body with four bad fields hears of all four at once
        raise InvalidSchedule(one_per_field([*problems, *_sent_timing_problems(data)])) from None
    problems = timing_problems(schedule)
    if problems:
        raise InvalidSchedule(one_per_field(problems))
    return schedule


def one_per_field(problems: list[FieldProblem]) -> list[FieldProblem]:
    """Each field once, in the order first named, its messages joined."""
    messages: dict[str, list[str]] = {}
    for problem in problems:
        said = messages.setdefault(problem.field, [])
        if problem.message not in said:
            said.append(problem.message)
    return [FieldProblem(field, "; ".join(said)) for field, said in messages.items()]


def decode_schedule(raw: bytes) -> Schedule:
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # incl. nesting too deep, a 5,000-digit number
        raise InvalidSchedule([FieldProblem("schedule", f"not JSON: {type(exc).__name__}: "
                                            f"{str(exc)[:200]}")], InvalidReason.NOT_JSON) from None
    if not isinstance(data, dict):
        raise InvalidSchedule([FieldProblem("schedule", "a JSON object is expected")],
                              InvalidReason.NOT_AN_OBJECT)
    return parse_schedule(data)


def json_kind(value: Any) -> str:
    """What a JSON value is, in JSON's words (for "a JSON object is expected; got an array")."""
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "null" if value is None else type(value).__name__


def schedule_from_request(
    body: Any, *, tenant_id: str, now: datetime, schedule_id: str | None = None,
    default_timezone: str = "UTC", is_stored: Callable[[str], bool] | None = None,
    extra_problems: list[FieldProblem] | None = None,
) -> Schedule:
    """A definition sent to the API or the CLI: the tenant comes from the caller's token,
    ``delay_ms`` becomes ``run_at``, a missing name is the id and a missing time zone is
    ``default_timezone`` (its job type's, say: exports run on Berlin's clock).

    A missing id is derived from the *canonical* definition (:func:`derived_schedule_id`:
    defaults filled in, cron whitespace normalised), so the same definition sent twice, however
    spelled, is one schedule; a schedule stored under the id an earlier release derived from
    the raw body (``is_stored`` says which ids the tenant has) is found again under that id.
    Every problem is named in one :class:`InvalidSchedule` (``extra_problems``: the caller's
    own checks of the same body, e.g. an undeclared job type)."""
    problems = list(extra_problems or [])
    if not isinstance(body, dict):
        raise InvalidSchedule([FieldProblem(
            "body", f"a JSON object is expected, e.g. {{\"job_type\": \"export\", \"cron\": "
                    f"\"30 2 * * *\"}}; got {json_kind(body)}")])
    data = {k: v for k, v in body.items() if k not in ("tenant_id", *STAMPS)}
    if "tenant_id" in body and body["tenant_id"] != tenant_id:
        problems.append(FieldProblem("tenant_id", "is set by your token; leave it out"))
    if "delay_ms" in data:
        delay = data.pop("delay_ms")
        if not isinstance(delay, int) or isinstance(delay, bool) or not 0 <= delay <= MAX_EVERY_MS:
            problems.append(FieldProblem("delay_ms", f"a whole number of ms, 0..{MAX_EVERY_MS}"))
        elif data.get("run_at") is not None:
            problems.append(FieldProblem("delay_ms", "give run_at or delay_ms, not both"))
        else:
            data["run_at"] = (now + timedelta(milliseconds=delay)).isoformat()
    if schedule_id is not None:
        if data.get("id", schedule_id) != schedule_id:
            problems.append(FieldProblem("id", "differs from the id in the path"))
        data["id"] = schedule_id
    derive = "id" not in data
    legacy_id = _legacy_schedule_id(tenant_id, data) if derive else None
    named = "name" in data
    if data.get("timezone") is None:
        data["timezone"] = default_timezone
    if derive:
        data["id"] = "s-derived"  # a stand-in until the definition is known to be good
    data.setdefault("name", data["id"])
    try:
        schedule = parse_schedule({**data, "tenant_id": tenant_id, "revision_at": now.isoformat(),
                                   "created_at": now.isoformat()})
    except InvalidSchedule as exc:
        raise InvalidSchedule(one_per_field([*problems, *exc.problems])) from None
    if problems:
        raise InvalidSchedule(one_per_field(problems))
    if not derive:
        return schedule
    derived = derived_schedule_id(schedule, named=named)
    if (is_stored is not None and legacy_id is not None and legacy_id != derived
            and not is_stored(derived) and is_stored(legacy_id)):
        derived = legacy_id  # stored by an earlier release under its raw body's id
    return schedule.model_copy(update={"id": derived, "name": schedule.name if named else derived})


def derived_schedule_id(schedule: Schedule, *, named: bool) -> str:
    """The id of a schedule sent without one: a digest of its tenant and its canonical
    definition, i.e. what it says with defaults left out (so ``"timezone": "UTC"`` given or not
    is one schedule), cron whitespace normalised (by the model), times in UTC, and its name
    only if one was given (else the name is this id)."""
    leave_out = {"id", "tenant_id", *STAMPS} | (set() if named else {"name"})
    definition = schedule.model_dump(exclude=leave_out, exclude_defaults=True)
    canonical = json.dumps(definition, sort_keys=True, separators=(",", ":"), default=_canonical)
    return "s-" + hashlib.sha256(f"{schedule.tenant_id}\x1f{canonical}".encode()).hexdigest()[:24]


def _canonical(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    raise TypeError(f"{type(value).__name__} is not part of a schedule's definition")


def _legacy_schedule_id(tenant_id: str, data: dict[str, Any]) -> str:
    """The id releases before the canonical rule derived: a digest of the body as sent (after
    ``delay_ms`` became ``run_at``), so spelling a default out made another schedule."""
    sent = json.dumps(data, sort_keys=True, default=str)
    return "s-" + hashlib.sha256(f"{tenant_id}\x1f{sent}".encode()).hexdigest()[:24]


def _one_of_problem(given: list[str]) -> FieldProblem:
    field = given[1] if len(given) > 1 else "cron"
    return FieldProblem(field, "give exactly one of cron, every_ms or run_at (or delay_ms)"
                        + (f"; got {', '.join(given)}" if given else ""))


def _cron_problem(cron: str) -> FieldProblem:
    return FieldProblem(
        "cron", f"{cron!r} is not a cron pattern: [second] minute hour day month weekday, "
        "e.g. '30 2 * * *', '*/5 * * * * *' (every 5 seconds), or "
        "@hourly/@daily/@weekly/@monthly/@yearly")


def _zone_problem(zone: str) -> FieldProblem | None:
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        return FieldProblem("timezone", f"{zone!r} is not an IANA time zone, e.g. Europe/Berlin")
    return None


def _sent_timing_problems(data: dict[str, Any]) -> list[FieldProblem]:
    """The checks of :func:`timing_problems` that can be made on the fields as sent, for a
    definition the model refused (a field it refused is named by the model already)."""
    problems: list[FieldProblem] = []
    given = [name for name in ("cron", "every_ms", "run_at") if data.get(name) is not None]
    if len(given) != 1:
        problems.append(_one_of_problem(given))
    cron = data.get("cron")
    if isinstance(cron, str) and not is_cron_pattern(" ".join(cron.split())):
        problems.append(_cron_problem(cron))
    zone = data.get("timezone")
    if isinstance(zone, str) and (zone_problem := _zone_problem(zone)) is not None:
        problems.append(zone_problem)
    return problems


def timing_problems(s: Schedule) -> list[FieldProblem]:
    """The rules between a definition's fields (the model checks each field alone)."""
    problems: list[FieldProblem] = []
    given = [name for name in ("cron", "every_ms", "run_at") if getattr(s, name) is not None]
    if len(given) != 1:
        problems.append(_one_of_problem(given))
    if s.cron is not None and not is_cron_pattern(s.cron):
        problems.append(_cron_problem(s.cron))
    if (zone_problem := _zone_problem(s.timezone)) is not None:
        problems.append(zone_problem)
    if s.start_at and s.end_at and s.end_at <= s.start_at:
        problems.append(FieldProblem("end_at", "must be after start_at"))
    if s.limit is not None and s.run_at is not None:
        problems.append(FieldProblem(
            "limit", "a one-off (run_at) fires once; limit applies to cron and every_ms"))
    if s.clock == "world":
        if s.cron is not None:
            problems.append(FieldProblem(
                "cron", "a world-clock schedule runs at a world time (run_at) or every so long "
                "in world time (every_ms from start_at); cron is for the wall clock"))
        if s.every_ms is not None and s.start_at is None:
            problems.append(FieldProblem(
                "start_at", "a world-clock interval is anchored at a world time: give start_at"))
    return problems


def tick_id(key: bytes, fire_at: datetime) -> str:
    """The id of the tick of one (schedule, fire time): the same on every worker, every time."""
    return tick_id_at(key, fire_at.astimezone(UTC).isoformat())


def tick_id_at(key: bytes, utc_fire_at: str) -> str:
    """:func:`tick_id` of a fire time already spelled in UTC."""
    digest = hashlib.sha256(key + b"\x1f" + utc_fire_at.encode()).hexdigest()
    return f"tick-{digest[:32]}"


def tick_trigger_ref(schedule_id: str, fire_at: datetime) -> str:
    """What a tick's job id is derived from (with tenant and job type)."""
    return f"tick:{schedule_id}:{fire_at.isoformat()}"


def manual_tick_id(key: bytes, trigger_key: str) -> str:
    """The id of a run started by hand (``POST /schedules/{id}/trigger``): from the schedule and
    the caller's idempotency key (or the request time), never equal to a scheduled tick's id."""
    digest = hashlib.sha256(key + b"\x1fmanual\x1f" + trigger_key.encode()).hexdigest()
    return f"manual-{digest[:32]}"


def manual_trigger_ref(schedule_id: str, run_id: str) -> str:
    """What a manual run's job id is derived from: its own run id, so it never shares a job id
    with a scheduled fire, even one at the same instant."""
    return f"manual:{schedule_id}:{run_id}"


def tick_ref(tick: CronTick) -> str:
    """What the job of a tick is derived from: its schedule and fire time, or a manual run's id."""
    if tick.trigger == "manual":
        return manual_trigger_ref(tick.schedule_id, tick.event_id)
    return tick_trigger_ref(tick.schedule_id, tick.fire_at)


def tick_job_id(tick: CronTick) -> str:
    """The id of the job a tick becomes (ingest makes exactly this job): run history reads the
    job's status under it."""
    return job_id_for(tick.tenant_id, tick.job_type, tick_ref(tick))


def prepare_upsert(new: Schedule, existing: Schedule | None, now: datetime) -> Schedule | None:
    """What to write for an upsert of ``new`` over ``existing``; None if nothing changes.

    The same definition again writes nothing; ``created_at`` is the first write's. A change
    that leaves the timing alone (name, payload, policies) keeps ``revision_at``, so the
    schedule keeps its place in time; a timing change (or a new schedule) is stamped ``now``
    unless the caller stamped it."""
    if existing is not None and new.same_definition(existing):
        return None
    if existing is not None:
        # created once: an interval's anchor never moves under it (a record from before
        # created_at was kept stays on the epoch's grid)
        new = new.model_copy(update={"created_at": existing.created_at})
    if existing is not None and new.same_timing(existing):
        return new.model_copy(update={"revision_at": existing.revision_at or new.revision_at or now})
    if new.revision_at is None:
        return new.model_copy(update={"revision_at": now})
    return new
