"""The job envelope: what a job topic carries, and how its id is derived."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from cronbus.streams.events import Identifier, JobTypeName, TenantId
from cronbus.streams.outcomes import Notify
from cronbus.streams.priorities import Priority

# what made a job: events, a schedule, a person, or another job (a handler's child job)
Trigger = Literal["cron", "event", "manual", "job"]


class JobState(StrEnum):
    """Where a job is: as the status store keeps it, the runs API shows it and the ticker reads
    it (an overlap policy waits for a job that is not done)."""

    WAITING = "waiting"  # emitted, or waiting for its service's circuit to close
    ACTIVE = "active"  # an attempt is running
    RETRY_DUE = "retry_due"  # an attempt failed; the next is due from a retry topic
    COMPLETED = "completed"
    DEAD_LETTERED = "dead_lettered"  # given up: the record is on its dead-letter topic

    @property
    def done(self) -> bool:
        return self in (JobState.COMPLETED, JobState.DEAD_LETTERED)

    @classmethod
    def read(cls, stored: str | bytes | None) -> JobState:
        """A state as stored; the names before this one (``failed``, ``dead``) read as today's
        (statuses live for days in Redis across an upgrade); none stored yet is waiting."""
        if isinstance(stored, bytes):
            stored = stored.decode()
        if not stored:
            return cls.WAITING
        return _FORMER_NAMES.get(stored) or cls(stored)


_FORMER_NAMES = {"failed": JobState.RETRY_DUE, "dead": JobState.DEAD_LETTERED}


class EventCoverage(BaseModel):
    """Which events a job covers: all of them counted, their ids listed up to a bound."""

    model_config = ConfigDict(frozen=True)

    count: int = Field(ge=1)
    first_event_id: Identifier
    last_event_id: Identifier
    event_ids: list[Identifier] = Field(min_length=1)
    first_at: AwareDatetime
    last_at: AwareDatetime

    @model_validator(mode="after")
    def _bounded(self) -> EventCoverage:
        if len(self.event_ids) > self.count:
            raise ValueError("event_ids lists more events than count")
        return self


class Job(BaseModel):
    """One unit of work for one tenant. Its key on the wire is ``tenant_id``; it never changes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    job_id: Identifier
    tenant_id: TenantId
    type: JobTypeName
    triggered_by: Trigger
    scheduled_at: AwareDatetime
    covers: EventCoverage | None = None
    payload: dict[str, Any] = Field(default_factory=dict)
    # a world-clock schedule's run: the tenant's world time it was due at (scheduled_at is the
    # wall time it fired)
    world_due_at: AwareDatetime | None = None
    # who to tell of its outcome (a schedule's notify rides on its ticks into its jobs)
    notify: Notify | None = None
    # 1..10 (:mod:`cronbus.streams.priorities`): its publisher's, its schedule's or its job
    # type's default; absent on records written before priorities (they run as normal)
    priority: Priority | None = None

    def encode(self) -> bytes:
        # an unset notify or priority is no key: such a record reads as before on workers that
        # know neither (older workers forbid unknown keys)
        unset = {name for name in ("notify", "priority") if getattr(self, name) is None}
        return self.model_dump_json(exclude=unset or None).encode()

    @classmethod
    def decode(cls, raw: bytes) -> Job:
        return cls.model_validate_json(raw)


def job_id_for(tenant_id: str, job_type: str, trigger_ref: str) -> str:
    """A deterministic job id, so a redelivered or replayed job is recognised.

    ``trigger_ref`` names what caused the job: the debounce window (its first event id),
    the schedule and fire time, or the effect id.
    """
    digest = hashlib.sha256(f"{tenant_id}\x1f{job_type}\x1f{trigger_ref}".encode()).hexdigest()
    return f"{job_type}-{digest[:32]}"


def window_trigger_ref(first_event_id: str) -> str:
    return f"debounce:{first_event_id}"


# the Unix times a job's status keeps (the processors compare and order them as numbers)
STATUS_TIMES = ("started_at", "updated_at", "finished_at", "due_at")


def status_answer(record: dict[str, Any]) -> dict[str, Any]:
    """A job's status as an answer shows it (``cronbus jobs status``, ``GET /jobs/{id}``): its
    times ISO 8601 in UTC, as every answer's."""
    shown = dict(record)
    for name in STATUS_TIMES:
        if isinstance(shown.get(name), int | float):
            shown[name] = datetime.fromtimestamp(float(shown[name]), UTC).isoformat()
    return shown
