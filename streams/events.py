"""Domain events: their schemas and how a raw record becomes one (or is rejected, with a reason)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from cronbus.streams import topics
from cronbus.streams.outcomes import Notify
from cronbus.streams.priorities import Priority

TENANT_ID_PATTERN = r"^[A-Za-z0-9._:@-]{1,128}$"
TenantId = Annotated[str, StringConstraints(pattern=TENANT_ID_PATTERN)]
Identifier = Annotated[str, StringConstraints(min_length=1, max_length=200)]
JobTypeName = Annotated[str, StringConstraints(pattern=topics.JOB_TYPE_NAME_PATTERN)]


class DomainEvent(BaseModel):
    """What every domain event carries. Unknown extra fields are ignored, so producers may add.
    Each kind names its topic in ``type`` (a ``Literal`` with that default)."""

    model_config = ConfigDict(frozen=True, extra="ignore", str_strip_whitespace=True)

    event_id: Identifier
    tenant_id: TenantId
    occurred_at: AwareDatetime
    # who to tell of the outcome of the job it starts (a job of its own: an immediate job type;
    # a debounced window's job covers many events and carries none)
    notify: Notify | None = None
    # the publisher's say: 1..10 or low/normal/high/critical; the jobs it starts run at it
    priority: Priority | None = None


class WorldTimeAdvanced(DomainEvent):
    """A tenant's (campaign's) world clock moved forward."""

    type: Literal[topics.WORLD_TIME_ADVANCED] = topics.WORLD_TIME_ADVANCED
    world_time: AwareDatetime
    previous_world_time: AwareDatetime | None = None


class EntityModified(DomainEvent):
    type: Literal[topics.ENTITY_MODIFIED] = topics.ENTITY_MODIFIED
    entity_type: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,63}$")]
    entity_id: Identifier
    change: Literal["created", "updated", "deleted"] = "updated"


class InvoiceDue(DomainEvent):
    type: Literal[topics.INVOICE_DUE] = topics.INVOICE_DUE
    invoice_id: Identifier
    due_date: date
    amount: Annotated[Decimal, Field(ge=0, max_digits=18, decimal_places=4)]
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")] = "ZAR"
    # "generate" issues the invoice; "remind" chases payment of an issued one
    stage: Literal["generate", "remind"] = "generate"


class ExportRequested(DomainEvent):
    type: Literal[topics.EXPORT_REQUESTED] = topics.EXPORT_REQUESTED
    export_id: Identifier
    format: Literal["csv", "json", "xlsx", "pdf"] = "csv"
    requested_by: Identifier | None = None
    params: dict[str, Any] = Field(default_factory=dict)


class CronTick(DomainEvent):
    """A schedule fired: one record per (schedule, fire time); ``event_id`` is the tick id."""

    type: Literal[topics.CRON_TICKS] = topics.CRON_TICKS
    schedule_id: Identifier
    job_type: JobTypeName
    fire_at: AwareDatetime
    payload: dict[str, Any] = Field(default_factory=dict)
    # "manual": started through the API (POST /schedules/{id}/trigger), not by the ticker
    trigger: Literal["schedule", "manual"] = "schedule"
    # "world": fire_at is the tenant's world time it was due at; occurred_at the wall time it fired
    clock: Literal["wall", "world"] = "wall"
    # notify and priority (DomainEvent's): the schedule's, who to tell of its job's outcome and
    # the priority of its job, if it has them


class InvalidReason(StrEnum):
    """Why a record was rejected; a bounded set, so it can label a metric."""

    NOT_JSON = "not_json"
    NOT_AN_OBJECT = "not_an_object"
    OVERSIZE = "oversize"
    UNKNOWN_TYPE = "unknown_type"
    MISSING_FIELD = "missing_field"
    BAD_FIELD = "bad_field"
    INTERNAL_ERROR = "internal_error"  # valid or not, cronbus failed on it: kept for replay


@dataclass(frozen=True, slots=True)
class Rejection:
    """A record that is not a valid event: the reason and a human-readable detail."""

    reason: InvalidReason
    detail: str


def parse_event(
    topic: str, raw: bytes | None, *, max_bytes: int, models: Mapping[str, type[DomainEvent]],
) -> DomainEvent | Rejection:
    """Turn one record value from ``topic`` into its event (``models``: the model of each
    topic, from the catalog), or say exactly why not."""
    model = models.get(topic)
    if model is None:
        return Rejection(InvalidReason.UNKNOWN_TYPE, f"no event type is read from topic {topic!r}")
    if raw is not None and len(raw) <= max_bytes:
        try:  # the common case in one pass: pydantic parses the JSON itself
            return model.model_validate_json(raw)
        except ValidationError:
            pass  # say exactly why below
    data = decode_object(raw, max_bytes=max_bytes)
    if isinstance(data, Rejection):
        return data
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        return _rejection_from(exc)


def decode_object(raw: bytes | None, *, max_bytes: int) -> dict[str, Any] | Rejection:
    """A record value as a JSON object, checked for size before it is parsed."""
    if raw is None:
        return Rejection(InvalidReason.NOT_JSON, "the record has no value")
    if len(raw) > max_bytes:
        return Rejection(InvalidReason.OVERSIZE, f"{len(raw)} bytes exceeds the limit of {max_bytes}")
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # incl. nesting too deep, a 5,000-digit number
        return Rejection(InvalidReason.NOT_JSON, f"not JSON: {type(exc).__name__}: {exc}"[:300])
    if not isinstance(data, dict):
        return Rejection(InvalidReason.NOT_AN_OBJECT, f"a JSON {type(data).__name__}, not an object")
    return data


def _rejection_from(exc: ValidationError) -> Rejection:
    errors = exc.errors()
    missing = [_field(e) for e in errors if e["type"] == "missing"]
    if missing:
        return Rejection(InvalidReason.MISSING_FIELD, f"missing field(s): {', '.join(missing)}")
    first = errors[0]
    if _field(first) == "type":
        return Rejection(InvalidReason.UNKNOWN_TYPE, f"type {first.get('input')!r} does not belong here")
    details = "; ".join(f"{_field(e)}: {e['msg']}" for e in errors)
    return Rejection(InvalidReason.BAD_FIELD, details)


def _field(error: Any) -> str:
    return ".".join(str(part) for part in error["loc"]) or "(record)"


def topic_of(event: DomainEvent) -> str:
    """The topic an event belongs on: its kind's ``type``."""
    return str(event.type)  # type: ignore[attr-defined]


def encode_event(event: DomainEvent) -> bytes:
    # an event without notify is written as before notify existed
    return event.model_dump_json(exclude={"notify"} if event.notify is None else None).encode()
