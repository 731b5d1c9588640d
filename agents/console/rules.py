"""The console's pure rules: who sees what, paging, filters, redaction and server-sent events.
No Faust, no I/O."""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

PAGE_DEFAULT, PAGE_MAX = 50, 200
# a key holding any of these (case-insensitive) has its value replaced wherever it is in a payload
SECRET_MARKERS = ("password", "passwd", "token", "secret", "authorization", "api_key", "apikey",
                  "credential", "private_key", "signature")
REDACTED = "[redacted]"
JOB_STATES = ("waiting", "active", "retry_due", "completed", "dead_lettered")


class BadQuery(ValueError):
    """A request parameter that is wrong: answered 422 naming it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message

    def body(self) -> dict[str, Any]:
        return {"error": "invalid request",
                "problems": [{"field": self.field, "message": self.message}]}



@dataclass(frozen=True, slots=True)
class Viewer:
    """Who is asking: a tenant sees its own tenant; the system tenant sees every tenant."""

    tenant_id: str
    system_tenant: str

    @property
    def sees_all(self) -> bool:
        return self.tenant_id == self.system_tenant

    def may_see(self, tenant_id: str | None) -> bool:
        return self.sees_all or tenant_id == self.tenant_id

    def scope(self, asked: str | None) -> str | None:
        """The tenant a listing covers: a tenant's own, whatever it asks (another tenant's asked
        for is refused); for the system tenant the one asked for, or None (every tenant)."""
        asked = asked or None
        if self.sees_all:
            return asked
        if asked is not None and asked != self.tenant_id:
            raise BadQuery("tenant", "a tenant's token lists only its own tenant")
        return self.tenant_id


@dataclass(frozen=True, slots=True)
class Page:
    offset: int
    limit: int


def page_of(query: Mapping[str, str]) -> Page:
    """``offset`` (0..) and ``limit`` (1..PAGE_MAX) from a query, or :class:`BadQuery`."""
    return Page(_whole(query, "offset", default=0, low=0, high=10**9),
                _whole(query, "limit", default=PAGE_DEFAULT, low=1, high=PAGE_MAX))


def _whole(query: Mapping[str, str], name: str, *, default: int, low: int, high: int) -> int:
    raw = (query.get(name) or "").strip()
    if not raw:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise BadQuery(name, f"a whole number {low}..{high}; got {raw!r}")
    return int(raw)


def job_state(query: Mapping[str, str]) -> str | None:
    state = (query.get("state") or "").strip() or None
    if state is not None and state not in JOB_STATES:
        raise BadQuery("state", f"one of {', '.join(JOB_STATES)}; got {state!r}")
    return state


def paged(items: Sequence[Any], page: Page) -> dict[str, Any]:
    """One page of a list already filtered, with where the next one starts (None: the last)."""
    end = page.offset + page.limit
    return {"items": list(items[page.offset:end]), "total": len(items), "offset": page.offset,
            "limit": page.limit, "next_offset": end if end < len(items) else None}


def redact(value: Any) -> Any:
    """A payload with the value of every secret-looking key replaced, at any depth."""
    if isinstance(value, Mapping):
        return {k: REDACTED if _secret(k) else redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value


def _secret(key: object) -> bool:
    lowered = str(key).lower().replace("-", "_")
    return any(marker in lowered for marker in SECRET_MARKERS)


def record_value(raw: bytes | None) -> Any:
    """A record's value as the console shows it: its JSON redacted, else its text."""
    if raw is None:
        return None
    try:
        return redact(json.loads(raw))
    except (UnicodeDecodeError, ValueError):
        return raw.decode(errors="replace")


def when(query: Mapping[str, str], name: str) -> datetime | None:
    """An ISO 8601 time parameter (no zone means UTC), or :class:`BadQuery`."""
    raw = (query.get(name) or "").strip()
    if not raw:
        return None
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise BadQuery(name, f"an ISO 8601 time, e.g. 2026-11-23T10:00:00Z; got {raw!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class LetterQuery:
    """Which dead letters a listing or a replay covers."""

    job_type: str | None = None
    tenant_id: str | None = None
    error_type: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def letter_query(query: Mapping[str, Any], viewer: Viewer, job_types: Sequence[str]) -> LetterQuery:
    """A dead-letter filter from a query (or a replay's JSON body), scoped to the viewer."""
    job_type = _text(query, "job_type")
    if job_type is not None and job_type not in job_types:
        raise BadQuery("job_type", f"one of {', '.join(job_types)}; got {job_type!r}")
    since, until = when(query, "since"), when(query, "until")
    if since and until and since > until:
        raise BadQuery("until", "must not be before since")
    return LetterQuery(job_type=job_type, tenant_id=viewer.scope(_text(query, "tenant")),
                       error_type=_text(query, "error_type"), since=since, until=until)


def _text(query: Mapping[str, Any], name: str) -> str | None:
    value = query.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadQuery(name, "a string")
    return value.strip() or None


RETRY_FAILED_FIELDS = frozenset({"tenant_id", "dry_run"})


@dataclass(frozen=True, slots=True)
class RetryFailedAsk:
    """``POST /queues/{job_type}/retry-failed``: whose dead letters (None: every tenant's)."""

    tenant_id: str | None
    dry_run: bool


def retry_failed_ask(body: Any, viewer: Viewer) -> RetryFailedAsk:
    """A retry-failed body (``{"tenant_id": .., "dry_run": ..}``, both optional), scoped to the
    viewer: a tenant's token retries its own tenant's only."""
    if not isinstance(body, dict):
        raise BadQuery("body", "a JSON object is expected")
    unknown = sorted(set(body) - RETRY_FAILED_FIELDS)
    if unknown:
        raise BadQuery(unknown[0], f"unknown field(s) {unknown}; known: tenant_id, dry_run")
    tenant = body.get("tenant_id")
    if tenant is not None and not isinstance(tenant, str):
        raise BadQuery("tenant_id", "a string")
    if not isinstance(body.get("dry_run", False), bool):
        raise BadQuery("dry_run", "true or false")
    try:
        scope = viewer.scope(tenant)
    except BadQuery:
        raise BadQuery("tenant_id", "a tenant's token retries only its own tenant's jobs") from None
    return RetryFailedAsk(scope, bool(body.get("dry_run", False)))


REPLAY_FIELDS = frozenset({"letter", "job_type", "tenant", "error_type", "since", "until",
                           "dry_run", "force"})


@dataclass(frozen=True, slots=True)
class ReplayAsk:
    """A replay request: one letter (``topic/partition/offset``) or a filter; a dry run counts."""

    query: LetterQuery
    letter: tuple[str, int, int] | None
    dry_run: bool
    force: bool


def replay_ask(body: Any, viewer: Viewer, job_types: Sequence[str]) -> ReplayAsk:
    if not isinstance(body, dict):
        raise BadQuery("body", "a JSON object is expected")
    unknown = sorted(set(body) - REPLAY_FIELDS)
    if unknown:
        raise BadQuery(unknown[0], f"not a field of a replay ({', '.join(sorted(REPLAY_FIELDS))})")
    for flag in ("dry_run", "force"):
        if not isinstance(body.get(flag, False), bool):
            raise BadQuery(flag, "true or false")
    letter = None
    if body.get("letter") is not None:
        letter = letter_ref(body["letter"])
    return ReplayAsk(letter_query(body, viewer, job_types), letter,
                     bool(body.get("dry_run", False)), bool(body.get("force", False)))


def letter_ref(raw: Any) -> tuple[str, int, int]:
    """A dead letter's reference ``<topic>/<partition>/<offset>``."""
    parts = raw.rsplit("/", 2) if isinstance(raw, str) else []
    if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
        raise BadQuery("letter", f"<topic>/<partition>/<offset>; got {raw!r}")
    return parts[0], int(parts[1]), int(parts[2])


def job_view(record: Mapping[str, Any]) -> dict[str, Any]:
    """A job's status as the console shows it, with its timeline (UTC ISO times, in order)."""
    view = dict(record)
    timeline = []
    for stamp, label in (("started_at", "attempt started"), ("updated_at", "last change"),
                         ("finished_at", "finished"), ("due_at", "due (rate limit)")):
        if isinstance(record.get(stamp), int | float):
            at = datetime.fromtimestamp(float(record[stamp]), UTC).isoformat()
            view[stamp] = at
            timeline.append({"at": at, "what": label})
    view["timeline"] = sorted(timeline, key=lambda t: t["at"])
    if isinstance(record.get("first_started_at"), int | float):
        view["first_started_at"] = _iso(record["first_started_at"])
    if isinstance(view.get("progress"), dict):
        view["progress"] = redact(view["progress"])
    return view


def sse(event: str, data: Any) -> bytes:
    """One server-sent event: its name and its JSON data (one line)."""
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _iso(stamp: Any) -> str | None:
    return datetime.fromtimestamp(float(stamp), UTC).isoformat() if isinstance(
        stamp, int | float) else None


def downstream_answer(status: int | None, error: str | None) -> str:
    """What the downstream API answered an attempt, in words."""
    if status is not None:
        return f"HTTP {status}"
    if error and error.startswith("CircuitOpen"):
        return "not called: its circuit was open"
    if error and error.startswith("DownstreamTimeout"):
        return "no answer in time"
    if error and error.startswith("DownstreamUnavailable"):
        return "unreachable"
    return "no HTTP answer" if error else "success (2xx)"


def job_cause(job: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """What made a job, from its record: the events it covers, the schedule fire (and world
    time) that started it, a person, or another job."""
    if job is None:
        return None
    payload = job.get("payload") if isinstance(job.get("payload"), dict) else {}
    cause: dict[str, Any] = {"triggered_by": job.get("triggered_by"),
                             "scheduled_at": job.get("scheduled_at")}
    if job.get("triggered_by") == "cron":
        cause["schedule_id"] = payload.get("schedule_id")
        if job.get("world_due_at"):
            cause["world_due_at"] = job["world_due_at"]
    covers = job.get("covers")
    if isinstance(covers, dict):
        cause["events"] = {k: covers.get(k) for k in (
            "count", "first_event_id", "last_event_id", "event_ids", "first_at", "last_at")}
    return cause


def job_detail(status: Mapping[str, Any], attempts: Sequence[Mapping[str, Any]],
               job: Mapping[str, Any] | None, *, emitted_at: float | None,
               record_note: str | None = None) -> dict[str, Any]:
    """One job as its page shows it: its status, every attempt with its error and what the
    downstream API answered, a timeline (emitted, each attempt started and failed, finished),
    what caused it and its payload (secrets redacted), from its status hash, its attempt log
    and its record on the job topic (``job``: its decoded value, None when it is gone)."""
    view = job_view(status)
    view.pop("record_at", None)
    tries: list[dict[str, Any]] = []
    for a in attempts:
        tries.append({"attempt": a.get("attempt"), "started_at": _iso(a.get("started_at")),
                      "ended_at": _iso(a.get("ended_at")), "outcome": a.get("state"),
                      "error": a.get("error"),
                      "downstream": downstream_answer(a.get("status"), a.get("error"))})
    failed = {t["attempt"] for t in tries}
    if status.get("state") == "completed" and status.get("attempts") not in failed:
        tries.append({"attempt": status.get("attempts"), "started_at": view.get("started_at"),
                      "ended_at": view.get("finished_at"), "outcome": "completed",
                      "error": None, "downstream": downstream_answer(None, None)})
    elif status.get("state") == "active" and status.get("attempts") not in failed:
        tries.append({"attempt": status.get("attempts"), "started_at": view.get("started_at"),
                      "ended_at": None, "outcome": "active", "error": None,
                      "downstream": "waiting for its answer"})
    view["attempt_log"] = tries
    view["downstream"] = tries[-1]["downstream"] if tries else None

    timeline: list[dict[str, Any]] = []
    if emitted_at is not None:
        timeline.append({"at": _iso(emitted_at), "what": "emitted"})
    for t in tries:
        if t["started_at"]:
            timeline.append({"at": t["started_at"], "what": f"attempt {t['attempt']} started"})
        if t["ended_at"] and t["outcome"] != "completed":
            what = "retried after" if t["outcome"] == "retry_due" else "dead-lettered after"
            timeline.append({"at": t["ended_at"], "what": f"{what} attempt {t['attempt']}: "
                                                          f"{t['error']}"})
    if view.get("due_at"):
        timeline.append({"at": view["due_at"], "what": "due (rate limit)"})
    if view.get("finished_at"):
        timeline.append({"at": view["finished_at"], "what": f"finished: {status.get('state')}"})
    view["timeline"] = sorted(timeline, key=lambda t: t["at"])
    view["cause"] = job_cause(job)
    view["payload"] = redact(job.get("payload")) if job is not None else None
    view["record_note"] = record_note
    return view


THROUGHPUT_MINUTES = 10


@dataclass
class ThroughputRing:
    """Per-minute completed jobs of one scope from samples of its running totals (the status
    store's counters), the last ``minutes`` kept: a sample per minute is enough, so the ring
    holds at most ``minutes + 1`` of them, whoever writes the counters."""

    minutes: int = THROUGHPUT_MINUTES
    samples: deque[tuple[int, dict[str, int]]] = field(default_factory=deque)

    def add(self, at: float, totals: Mapping[str, int]) -> None:
        """A sample of the totals at ``at``: the latest of each minute is kept."""
        minute = int(at // 60)
        if self.samples and self.samples[-1][0] == minute:
            self.samples.pop()
        self.samples.append((minute, dict(totals)))
        while len(self.samples) > self.minutes + 1:
            self.samples.popleft()

    def per_minute(self, now: float, totals: Mapping[str, int]) -> dict[str, list[int | None]]:
        """Per key, the completed count in each of the last ``minutes`` minutes (oldest
        first; the last is the minute under way), None for a minute without samples."""
        self.add(now, totals)
        by_minute = dict(self.samples)
        this = int(now // 60)
        out: dict[str, list[int | None]] = {}
        for key in totals:
            counts: list[int | None] = []
            for minute in range(this - self.minutes + 1, this + 1):
                end, start = by_minute.get(minute), by_minute.get(minute - 1)
                if end is None or start is None:
                    counts.append(None)
                else:
                    counts.append(max(0, end.get(key, 0) - start.get(key, 0)))
            out[key] = counts
        return out


def breaker_views(states: Mapping[str, str | None], services_of: Mapping[str, str]
                  ) -> tuple[list[dict[str, Any]], dict[str, bool]]:
    """Each service's circuit (``closed`` when none was kept yet), and per job type whether its
    topics are paused (its service's circuit is not closed)."""
    services = [{"service": s, "state": states.get(s) or "closed"} for s in sorted(states)]
    shut = {s["service"] for s in services if s["state"] != "closed"}
    return services, {t: s in shut for t, s in services_of.items()}
