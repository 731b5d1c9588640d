"""What a ticker keeps of a loaded schedule, and the fast way to read it from its record. Pure.

A ticker holds every schedule of the partitions it owns: a million of them. A pydantic
:class:`Schedule` costs ~825 bytes even shared and interned (its ``__dict__``, its set of given
fields), and parsing one ~50 µs. :class:`LoadedSchedule` holds only what the ticker reads
(slotted; strings interned; the id read from the key; no name), and :func:`loaded_schedule`
makes one from a record the way the API writes it, with pydantic's JSON parser and a few
checks.

Anything the fast path is not sure of (a field it does not keep: ``run_at``, ``notify``,
``priority``, a world clock; a value not written the canonical way: a date in another format,
a cron pattern with extra spaces, whitespace around a string) goes the full way
(:func:`cronbus.agents.schedules.directory.schedule_in`, by the ticker): the model it gives is
kept as it is, and a bad record gets the error it always got. What the fast path accepts the model accepts
too, with equal values (unit test).
"""

from __future__ import annotations

import re
import sys
from datetime import datetime
from functools import lru_cache
from typing import Any, ClassVar, Literal

from pydantic_core import from_json

from cronbus.streams import topics
from cronbus.streams.events import TENANT_ID_PATTERN
from cronbus.streams.jobs import job_id_for
from cronbus.streams.schedules import (
    MAX_EVERY_MS,
    schedule_key,
    tick_trigger_ref,
    timing_problems,
)

# the fields the fast path reads; a record with any other goes the full way
_FAST_FIELDS = frozenset({
    "id", "tenant_id", "name", "clock", "job_type", "payload", "cron", "timezone", "every_ms",
    "limit", "start_at", "end_at", "enabled", "misfire", "misfire_limit", "overlap",
    "revision_at", "created_at",
})
_SCHEDULE_ID = re.compile(r"[A-Za-z0-9._:@-]{1,128}").fullmatch  # ScheduleId's pattern
_TENANT_ID = re.compile(TENANT_ID_PATTERN).fullmatch
_JOB_TYPE = re.compile(topics.JOB_TYPE_NAME_PATTERN).fullmatch
# a time as the model writes it (ISO 8601, aware); any other spelling goes the full way
_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:Z|[+-]\d{2}:\d{2})").fullmatch
_MISFIRES = frozenset({"skip", "run_once", "run_all"})
_OVERLAPS = frozenset({"allow", "skip", "buffer_one"})
_NO_PAYLOAD: dict[str, Any] = {}  # shared by every schedule without one: nothing writes to it
_POLICIES: dict[tuple[bool, str, int, str], tuple[bool, str, int, str]] = {}


class LoadedSchedule:
    """A wall-clock cron or interval schedule as the ticker keeps it: the attributes of
    :class:`Schedule` that planning and firing read, with the same values. Frozen by custom:
    nothing writes to one after it is made (some of its objects are shared)."""

    __slots__ = (
        "_policy",
        "created_at",
        "cron",
        "end_at",
        "every_ms",
        "job_type",
        "key",
        "limit",
        "payload",
        "revision_at",
        "start_at",
        "tenant_id",
        "timezone",
    )

    # what the fast path never takes (such a schedule is kept as its model)
    clock: ClassVar[Literal["wall"]] = "wall"
    run_at: ClassVar[None] = None
    notify: ClassVar[None] = None
    priority: ClassVar[None] = None

    key: bytes
    tenant_id: str
    job_type: str
    payload: dict[str, Any]
    cron: str | None
    timezone: str
    every_ms: int | None
    limit: int | None
    start_at: datetime | None
    end_at: datetime | None
    revision_at: datetime | None
    created_at: datetime | None  # kept only as an interval's anchor (a cron never reads it)
    _policy: tuple[bool, str, int, str]  # enabled, misfire, misfire_limit, overlap: shared

    @property
    def id(self) -> str:
        return self.key[len(self.tenant_id.encode()) + 1:].decode()

    @property
    def enabled(self) -> bool:
        return self._policy[0]

    @property
    def misfire(self) -> str:
        return self._policy[1]

    @property
    def misfire_limit(self) -> int:
        return self._policy[2]

    @property
    def overlap(self) -> str:
        return self._policy[3]

    @property
    def anchor(self) -> datetime | None:
        return self.start_at or self.created_at

    @property
    def kind(self) -> Literal["cron", "every"]:
        return "cron" if self.cron is not None else "every"

    def job_id_at(self, fire_at: datetime) -> str:
        """The id of the job its tick for ``fire_at`` becomes (as :meth:`Schedule.job_id_at`)."""
        return job_id_for(self.tenant_id, self.job_type, tick_trigger_ref(self.id, fire_at))

    def __repr__(self) -> str:
        return f"LoadedSchedule({self.key!r})"


def loaded_schedule(key: bytes | None, value: bytes | None) -> LoadedSchedule | None:
    """The schedule a record of ``schedules`` stores, as the ticker keeps it; None if the fast
    path is not sure of it: then the record goes the full way (``schedule_in``)."""
    if key is None or value is None:
        return None
    try:
        data = from_json(value)  # pydantic's parser: a third of json.loads's time
    except ValueError:
        return None
    if type(data) is not dict or not data.keys() <= _FAST_FIELDS:
        return None
    get = data.get
    schedule_id, tenant, job_type, name = get("id"), get("tenant_id"), get("job_type"), get("name")
    if not (type(schedule_id) is str and _SCHEDULE_ID(schedule_id)
            and type(tenant) is str and _TENANT_ID(tenant)
            and type(job_type) is str and _JOB_TYPE(job_type)
            # the model strips strings: one it would strip goes the full way
            and type(name) is str and 0 < len(name) <= 200 and name == name.strip()
            and get("clock", "wall") == "wall"):
        return None
    payload = get("payload", _NO_PAYLOAD)
    cron, timezone = get("cron"), get("timezone", "UTC")
    every_ms, limit = get("every_ms"), get("limit")
    enabled, misfire = get("enabled", True), get("misfire", "run_once")
    misfire_limit, overlap = get("misfire_limit", 10), get("overlap", "allow")
    if not (type(payload) is dict
            and (cron is None or (type(cron) is str and cron == _canonical_cron(cron)))
            and type(timezone) is str and timezone == timezone.strip()
            and (every_ms is None or (type(every_ms) is int and 1000 <= every_ms <= MAX_EVERY_MS))
            and (limit is None or (type(limit) is int and limit >= 1))
            and type(enabled) is bool and misfire in _MISFIRES and overlap in _OVERLAPS
            and type(misfire_limit) is int and 1 <= misfire_limit <= 10_000):
        return None
    try:
        start_at, end_at = _time(get("start_at")), _time(get("end_at"))
        revision_at, created_at = _time(get("revision_at")), _time(get("created_at"))
    except ValueError:
        return None
    if schedule_key(tenant, schedule_id) != key:
        return None  # the full way names the mismatch
    loaded = LoadedSchedule()
    loaded.key = key
    loaded.tenant_id = sys.intern(tenant)
    loaded.job_type = sys.intern(job_type)
    loaded.payload = payload or _NO_PAYLOAD
    loaded.cron = sys.intern(cron) if cron is not None else None
    loaded.timezone = sys.intern(timezone)
    loaded.every_ms = every_ms
    loaded.limit = limit
    loaded.start_at = start_at
    loaded.end_at = end_at
    loaded.revision_at = revision_at
    loaded.created_at = created_at if every_ms is not None else None
    policy = (enabled, misfire, misfire_limit, overlap)
    loaded._policy = _POLICIES.setdefault(policy, policy)
    if timing_problems(loaded):  # type: ignore[arg-type]  # reads the same attributes
        return None  # the full way names them
    return loaded


@lru_cache(maxsize=4096)
def _canonical_cron(cron: str) -> str:
    """The pattern as the model keeps it (its validator's rule)."""
    fields = " ".join(cron.split())
    return fields.lower() if fields.startswith("@") else fields


@lru_cache(maxsize=65_536)  # schedules written together share their stamps: one object each
def _parsed_time(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError("naive")
    return moment


def _time(value: object) -> datetime | None:
    if value is None:
        return None
    if type(value) is not str or not _TIME(value):
        raise ValueError("not a time the fast path reads")
    return _parsed_time(value)
