"""The console's pure rules: who sees what, paging, filters, redaction and server-sent events.
No Faust, no I/O."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

PAGE_DEFAULT, PAGE_MAX = 50, 200
# a key holding any of these (case-insensitive) has its value replaced wherever it is in a payload
SECRET_MARKERS = ("password", "passwd", "token", "secret", "authorization", "api_key", "apikey",
                  "credential", "private_key")
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
    if isinstance(view.get("progress"), dict):
        view["progress"] = redact(view["progress"])
    return view


def sse(event: str, data: Any) -> bytes:
    """One server-sent event: its name and its JSON data (one line)."""
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()
